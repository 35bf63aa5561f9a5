//! Turning a question–answer row into training text.

use crate::error::{Error, Result};
use crate::reader::QaRow;

/// The system text the reference code prepends (Resa's `SAE_FINE_TUNE_SYSTEM_PROMPT`):
/// starts and ends with a newline.
pub const REFERENCE_SYSTEM_PROMPT: &str = "\nA conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.\n";

/// The zero-shot math prompt of the paper's evaluation (lighteval / open-r1's
/// `MATH_QUERY_TEMPLATE`), followed by a blank line and the question; the result is the
/// user message of the model's chat template.
pub const MATH_EVAL_PROMPT: &str = "Solve the following math problem efficiently and clearly.  The last line of your response should be of the following format: 'Therefore, the final answer is: $\\boxed{ANSWER}$. I hope it is correct' (without quotes) where ANSWER is just the final number or expression that solves the problem. Think step by step before answering.";

/// The user message for evaluating one math question (render it with the model's chat
/// template, e.g. `resa_qwen2::Tokenizer::apply_chat_template` with the generation prompt).
pub fn math_eval_message(question: &str) -> String {
    format!("{MATH_EVAL_PROMPT}\n\n{question}")
}

/// How a row becomes text (no chat template; the reference code uses none for training data).
///
/// In configuration files it is a string: `"reference"`, `"paper"`, or a template with
/// `{problem}` (and optionally `{answer}`); parsing checks the placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Template {
    /// The reference code's template, used for both trigger and elicitation data:
    /// `{SYSTEM}User:\n {problem}\n\nAssistant:\n <think> {answer} </think>\n<answer> Answer: {answer}</answer>`.
    #[default]
    Reference,
    /// The reference template with the row's worked solution inside the think tags (CoT-based
    /// SFT, the paper's DeepScaleR baseline):
    /// `{SYSTEM}User:\n {problem}\n\nAssistant:\n <think> {solution} </think>\n<answer> Answer: {answer}</answer>`.
    ReferenceCot,
    /// The paper's printed form:
    /// `Problem: {problem} <think> {answer} </think> <answer> Answer: {answer} </answer>`.
    Paper,
    /// A user template with `{problem}` (required), `{answer}` and `{solution}` (optional)
    /// placeholders.
    Custom(String),
}

impl Template {
    /// A custom template, checked for its `{problem}` placeholder.
    pub fn custom(template: impl Into<String>) -> Result<Self> {
        let template = template.into();
        if !template.contains("{problem}") {
            return Err(Error::Template { template, message: "has no {problem} placeholder".into() });
        }
        Ok(Template::Custom(template))
    }

    /// The name (`reference`, `paper`) or the custom template itself.
    pub fn as_str(&self) -> &str {
        match self {
            Template::Reference => "reference",
            Template::ReferenceCot => "reference-cot",
            Template::Paper => "paper",
            Template::Custom(t) => t,
        }
    }

    /// Whether rendering uses the row's worked solution (rows without one cannot be used).
    pub fn needs_solution(&self) -> bool {
        match self {
            Template::ReferenceCot => true,
            Template::Custom(t) => t.contains("{solution}"),
            Template::Reference | Template::Paper => false,
        }
    }

    /// Renders one row.
    pub fn render(&self, row: &QaRow) -> String {
        let (p, a) = (row.problem.as_str(), row.answer.as_str());
        let sol = row.solution.as_deref().unwrap_or_default();
        match self {
            Template::ReferenceCot => format!(
                "{REFERENCE_SYSTEM_PROMPT}User:\n {p}\n\nAssistant:\n <think> {sol} </think>\n<answer> Answer: {a}</answer>"
            ),
            Template::Reference => format!(
                "{REFERENCE_SYSTEM_PROMPT}User:\n {p}\n\nAssistant:\n <think> {a} </think>\n<answer> Answer: {a}</answer>"
            ),
            Template::Paper => format!("Problem: {p} <think> {a} </think> <answer> Answer: {a} </answer>"),
            // One pass over the template, so placeholders inside the problem text are kept.
            Template::Custom(t) => {
                let mut out = String::with_capacity(t.len() + p.len() + 2 * a.len());
                let mut rest = t.as_str();
                while let Some(i) = rest.find('{') {
                    out.push_str(&rest[..i]);
                    let tail = &rest[i..];
                    if let Some(r) = tail.strip_prefix("{problem}") {
                        out.push_str(p);
                        rest = r;
                    } else if let Some(r) = tail.strip_prefix("{answer}") {
                        out.push_str(a);
                        rest = r;
                    } else if let Some(r) = tail.strip_prefix("{solution}") {
                        out.push_str(sol);
                        rest = r;
                    } else {
                        out.push('{');
                        rest = &tail[1..];
                    }
                }
                out.push_str(rest);
                out
            }
        }
    }
}

impl std::str::FromStr for Template {
    type Err = Error;

    /// `reference`, `paper`, or a custom template (checked for `{problem}`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reference" => Ok(Template::Reference),
            "reference-cot" => Ok(Template::ReferenceCot),
            "paper" => Ok(Template::Paper),
            other => Template::custom(other),
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        match t {
            Template::Custom(t) => t,
            other => other.as_str().to_string(),
        }
    }
}

impl TryFrom<String> for Template {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> QaRow {
        QaRow::new("What is {answer} 1+1?", "2")
    }

    #[test]
    fn reference_template_exact() {
        let text = Template::Reference.render(&row());
        assert!(text.starts_with("\nA conversation between User and Assistant."));
        assert!(text.ends_with(
            "</answer>.\nUser:\n What is {answer} 1+1?\n\nAssistant:\n <think> 2 </think>\n<answer> Answer: 2</answer>"
        ));
    }

    #[test]
    fn paper_and_custom() {
        assert_eq!(
            Template::Paper.render(&row()),
            "Problem: What is {answer} 1+1? <think> 2 </think> <answer> Answer: 2 </answer>"
        );
        let t = Template::custom("Q: {problem}\nA: {answer} {x}").expect("valid");
        assert_eq!(t.render(&row()), "Q: What is {answer} 1+1?\nA: 2 {x}");
        assert!(matches!(Template::custom("no placeholder"), Err(Error::Template { .. })));
    }

    #[test]
    fn cot_templates_render_the_solution_and_say_they_need_it() {
        let row = QaRow { solution: Some("1+1=2".into()), ..QaRow::new("What is 1+1?", "2") };
        let t: Template = "reference-cot".parse().expect("known");
        assert!(t.needs_solution() && !Template::Reference.needs_solution());
        assert!(t.render(&row).ends_with("Assistant:\n <think> 1+1=2 </think>\n<answer> Answer: 2</answer>"));
        assert_eq!(t.to_string(), "reference-cot");
        let c = Template::custom("{problem} | {solution} | {answer}").expect("valid");
        assert!(c.needs_solution());
        assert_eq!(c.render(&row), "What is 1+1? | 1+1=2 | 2");
    }
}
