//! The reasoning-feature dashboard: one self-contained HTML page (no server, no network:
//! styles, figures and the small script are inline). Per layer, its reasoning-feature count;
//! the per-layer figure with the mixture; for each reasoning feature, its activation at
//! `<think>` and `</think>` in the prompt, its decoder-direction neighbours and its
//! strongest contexts in the trigger data, each token shaded by the feature's activation.
//! Everything is in the static page (readable with JavaScript off); the script only adds a
//! search box that shows the features of one latent id.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::extract::Context;

/// One reasoning feature as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCard {
    /// Latent id.
    pub latent: u32,
    /// Strongest activation at a `<think>` token of the prompt.
    pub at_think: f32,
    /// Strongest activation at a `</think>` token of the prompt.
    pub at_end_think: f32,
    /// Latents with the nearest decoder directions, `(latent, cosine)`.
    pub neighbours: Vec<(u32, f32)>,
    /// Strongest contexts in the trigger data (empty when none was searched).
    pub contexts: Vec<Context>,
}

/// One hookpoint's reasoning features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCard {
    /// Hookpoint name, e.g. `layers.12`.
    pub hookpoint: String,
    /// Its reasoning features.
    pub features: Vec<FeatureCard>,
}

/// What the page shows besides the layers.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    /// Title (also the heading).
    pub title: &'a str,
    /// One line under the title: the model, the prompt, the data searched.
    pub subtitle: &'a str,
    /// Figures as `(caption, SVG document)`, inlined.
    pub figures: Vec<(String, String)>,
    /// Whether contexts were searched (otherwise the page says so instead of "never active").
    pub searched: bool,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An SVG document as inline markup: its XML declaration and doctype dropped.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or("", |i| &svg[i..])
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}.num{text-align:right}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}\
.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.2em 0}.ctx span{border-radius:2px}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}#search{font-size:1em;padding:.3em;width:14em}\
.hidden{display:none}.muted{color:#777}";

const SCRIPT: &str = "(function(){var box=document.getElementById('search');var note=document.getElementById('found');\
if(!box||!note){return;}box.addEventListener('input',function(){var q=box.value.trim();var cards=document.querySelectorAll('.card');\
var shown=0;for(var i=0;i<cards.length;i++){var hit=q===''||cards[i].getAttribute('data-latent')===q;\
cards[i].classList.toggle('hidden',!hit);if(hit){shown++;}}note.textContent=q===''?'':shown+' feature(s) with latent '+q;});})();";

/// The background of a token with activation `a` when the context's strongest is `max`.
fn shade(a: f32, max: f32) -> String {
    let alpha = if max > 0.0 && a > 0.0 { (a / max).clamp(0.0, 1.0) * 0.85 } else { 0.0 };
    format!("rgba(230,120,20,{alpha:.2})")
}

fn feature_card(out: &mut String, hookpoint: &str, f: &FeatureCard, searched: bool) {
    let id = format!("{hookpoint}-{}", f.latent);
    let _ = write!(
        out,
        "<div class=\"card\" id=\"{id}\" data-latent=\"{}\"><h3>{} latent {}</h3>\
         <p>Activation in the prompt: at <code>&lt;think&gt;</code> {:.3}, at <code>&lt;/think&gt;</code> {:.3}.</p>",
        f.latent,
        escape(hookpoint),
        f.latent,
        f.at_think,
        f.at_end_think
    );
    if !f.neighbours.is_empty() {
        out.push_str("<p>Decoder-direction neighbours (cosine): ");
        let list: Vec<String> = f.neighbours.iter().map(|(l, c)| format!("{l} ({c:.3})")).collect();
        out.push_str(&escape(&list.join(", ")));
        out.push_str("</p>");
    }
    if f.contexts.is_empty() {
        out.push_str(if searched {
            "<p class=\"muted\">Never active on the data searched.</p>"
        } else {
            "<p class=\"muted\">No data was searched for contexts.</p>"
        });
    } else {
        out.push_str("<p>Strongest contexts:</p>");
        for c in &f.contexts {
            let max = c.tokens.iter().map(|(_, a)| *a).fold(c.activation, f32::max);
            let _ = write!(out, "<div class=\"ctx\"><b>{:.3}</b> ", c.activation);
            if c.tokens.is_empty() {
                let _ = write!(out, "{}<mark>{}</mark>{}", escape(&c.before), escape(&c.token), escape(&c.after));
            } else {
                for (t, a) in &c.tokens {
                    let _ = write!(
                        out,
                        "<span title=\"{a:.3}\" style=\"background:{}\">{}</span>",
                        shade(*a, max),
                        escape(t)
                    );
                }
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</div>");
}

/// The page.
pub fn html(page: &Page<'_>, layers: &[LayerCard]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\
         <body><h1>{t}</h1><p class=\"muted\">{s}</p>",
        t = escape(page.title),
        s = escape(page.subtitle)
    );
    out.push_str(
        "<h2>Reasoning features per layer</h2><table id=\"counts\"><thead><tr><th>Hookpoint</th>\
         <th class=\"num\">Reasoning features</th><th>Latents</th></tr></thead><tbody>",
    );
    for l in layers {
        let links: Vec<String> = l
            .features
            .iter()
            .map(|f| format!("<a href=\"#{}-{}\">{}</a>", escape(&l.hookpoint), f.latent, f.latent))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&l.hookpoint),
            l.features.len(),
            links.join(" ")
        );
    }
    out.push_str("</tbody></table>");
    for (caption, svg) in &page.figures {
        let _ = write!(out, "<figure>{}<figcaption>{}</figcaption></figure>", inline_svg(svg), escape(caption));
    }
    out.push_str(
        "<h2>Features</h2><p><label for=\"search\">Latent id: </label><input id=\"search\" type=\"search\" \
         inputmode=\"numeric\" placeholder=\"e.g. 850\"> <span id=\"found\"></span></p>",
    );
    if layers.iter().all(|l| l.features.is_empty()) {
        out.push_str("<p>No layer has a reasoning feature on this prompt.</p>");
    }
    for l in layers.iter().filter(|l| !l.features.is_empty()) {
        let _ = write!(out, "<h2>{}</h2>", escape(&l.hookpoint));
        for f in &l.features {
            feature_card(&mut out, &l.hookpoint, f, page.searched);
        }
    }
    let _ = write!(out, "<script>{SCRIPT}</script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(latent: u32) -> FeatureCard {
        FeatureCard {
            latent,
            at_think: 1.5,
            at_end_think: 0.25,
            neighbours: vec![(7, 0.5)],
            contexts: vec![Context {
                activation: 2.0,
                before: "a <b".into(),
                token: "&".into(),
                after: "c".into(),
                tokens: vec![("a <b".into(), 0.0), ("&".into(), 2.0), ("c".into(), 1.0)],
            }],
        }
    }

    #[test]
    fn the_page_holds_every_layer_and_feature_escaped() {
        let layers = vec![
            LayerCard { hookpoint: "layers.0".into(), features: vec![card(923)] },
            LayerCard { hookpoint: "layers.1".into(), features: vec![] },
        ];
        let page = Page {
            title: "T <x>",
            subtitle: "s",
            figures: vec![("fig".into(), "<?xml?><svg></svg>".into())],
            searched: true,
        };
        let h = html(&page, &layers);
        assert!(h.starts_with("<!DOCTYPE html>") && h.ends_with("</html>\n"));
        assert!(h.contains("<title>T &lt;x&gt;</title>"));
        assert!(
            h.contains("<tr><td>layers.0</td><td class=\"num\">1</td><td><a href=\"#layers.0-923\">923</a></td></tr>")
        );
        assert!(h.contains("<tr><td>layers.1</td><td class=\"num\">0</td><td></td></tr>"));
        assert!(h.contains("id=\"layers.0-923\" data-latent=\"923\""));
        assert!(h.contains(">a &lt;b</span>") && h.contains("background:rgba(230,120,20,0.85)\">&amp;</span>"));
        assert!(
            h.contains("<figure><svg></svg><figcaption>fig</figcaption></figure>"),
            "the SVG inline, without its prolog"
        );
        assert!(h.contains("7 (0.500)") && h.contains("at <code>&lt;think&gt;</code> 1.500"));
        assert!(!h.contains("src=") && !h.contains("href=\"http"), "nothing is fetched");
    }
}
