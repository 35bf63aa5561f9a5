//! Publishing files and folders: whole or not at all, never over a user's data.

/// `replace_dir` never moves a user's file aside: an output path that is a file is refused.
#[test]
fn replacing_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, "user data").expect("write");
    let tmp = dir.path().join(".tmp-out");
    std::fs::create_dir(&tmp).expect("tmp");
    std::fs::write(tmp.join("config.json"), "{}").expect("write");
    let err = resa_publish::replace_dir(&tmp, &target).expect_err("refused");
    assert!(err.to_string().contains("precious.txt") && err.to_string().contains("not a folder"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("still there"), "user data");
    assert!(!tmp.exists(), "the temporary folder is removed");
    let others: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").filter_map(|e| e.ok()).collect();
    assert_eq!(others.len(), 1, "nothing else left behind: {others:?}");
}

/// Nor a user's folder: an existing, non-empty folder holding none of the files resa
/// writes is refused and left as it was; a folder resa wrote, or an empty one, is replaced.
#[test]
fn replacing_a_users_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = |name: &str| {
        let tmp = dir.path().join(name);
        std::fs::create_dir(&tmp).expect("tmp");
        std::fs::write(tmp.join("config.json"), "{\"new\": true}").expect("write");
        tmp
    };
    let users = dir.path().join("thesis");
    std::fs::create_dir(&users).expect("mkdir");
    std::fs::write(users.join("chapter1.tex"), "user data").expect("write");
    let tmp = fresh(".a");
    let err = resa_publish::replace_dir(&tmp, &users).expect_err("refused");
    assert!(err.to_string().contains("thesis") && err.to_string().contains("none of the files"), "{err}");
    assert_eq!(std::fs::read_to_string(users.join("chapter1.tex")).expect("intact"), "user data");
    assert!(!tmp.exists());
    // Ours (it holds a config.json) and an empty folder are replaced.
    let ours = dir.path().join("merged");
    std::fs::create_dir(&ours).expect("mkdir");
    std::fs::write(ours.join("config.json"), "{}").expect("write");
    resa_publish::replace_dir(&fresh(".b"), &ours).expect("ours");
    assert!(std::fs::read_to_string(ours.join("config.json")).expect("new").contains("new"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    resa_publish::replace_dir(&fresh(".c"), &empty).expect("empty");
}

/// A file is published whole, over an older one, and nothing is left beside it.
#[test]
fn a_file_is_replaced_whole_and_nothing_is_left_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.json");
    resa_publish::write_atomic(&path, b"old").expect("first");
    resa_publish::write_atomic(&path, b"new").expect("second");
    assert_eq!(std::fs::read(&path).expect("read"), b"new");
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["report.json"]);
    // A destination whose folder does not exist fails naming the file, leaving nothing.
    let err = resa_publish::write_atomic(dir.path().join("missing/x.json"), b"x").expect_err("no folder");
    assert!(err.to_string().contains("missing/x.json"), "{err}");
}

/// What killed runs left (`.NAME.tmp`, `.NAME.old`, files or folders) is removed; anything
/// else, hidden files of other programs included, is kept.
#[test]
fn stale_temporaries_are_removed_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join(".report.json.tmp"), "x").expect("write");
    std::fs::create_dir(d.join(".adapter.old")).expect("mkdir");
    std::fs::write(d.join(".adapter.old/cfg.json"), "x").expect("write");
    std::fs::write(d.join(".gitignore"), "x").expect("write");
    std::fs::write(d.join("result.tmp"), "x").expect("write");
    assert_eq!(resa_publish::remove_stale_temporaries(d).expect("removed"), 2);
    let mut names: Vec<_> = std::fs::read_dir(d).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, [".gitignore", "result.tmp"]);
    assert_eq!(resa_publish::remove_stale_temporaries(&d.join("absent")).expect("no folder"), 0);
}

mod manifest {
    use resa_publish::manifest::{Checked, MANIFEST, newest_intact, verify, write_manifest};

    fn folder(dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("sub")).expect("dirs");
        std::fs::write(dir.join("a.bin"), vec![7u8; 5000]).expect("a");
        std::fs::write(dir.join("sub/b.json"), b"{\"x\": 1}").expect("b");
    }

    #[test]
    fn a_folder_checks_out_until_a_byte_changes_or_a_file_goes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("f");
        folder(&dir);
        assert_eq!(verify(&dir).expect("no manifest"), Checked::Unlisted, "a folder from elsewhere");
        write_manifest(&dir).expect("manifest");
        let text = std::fs::read_to_string(dir.join(MANIFEST)).expect("manifest");
        assert!(text.contains("\"a.bin\"") && text.contains("\"sub/b.json\"") && text.contains("xxh3"), "{text}");
        assert_eq!(verify(&dir).expect("intact"), Checked::Intact);
        // An extra file is not checked; a listed one is.
        std::fs::write(dir.join("notes.txt"), b"added later").expect("extra");
        assert_eq!(verify(&dir).expect("intact"), Checked::Intact);

        let mut bytes = std::fs::read(dir.join("a.bin")).expect("a");
        bytes[4321] ^= 1;
        std::fs::write(dir.join("a.bin"), &bytes).expect("flip");
        let err = verify(&dir).expect_err("a flipped byte");
        assert!(err.path.ends_with("a.bin") && err.to_string().contains("hash"), "{err}");
        bytes[4321] ^= 1;
        std::fs::write(dir.join("a.bin"), &bytes[..4000]).expect("truncate");
        let err = verify(&dir).expect_err("truncated");
        assert!(err.to_string().contains("4000 bytes; the manifest says 5000"), "{err}");
        std::fs::write(dir.join("a.bin"), &bytes).expect("restore");
        assert_eq!(verify(&dir).expect("intact again"), Checked::Intact);
        std::fs::remove_file(dir.join("sub/b.json")).expect("remove");
        let err = verify(&dir).expect_err("missing");
        assert!(err.path.ends_with("sub/b.json") && err.to_string().contains("missing"), "{err}");
        std::fs::write(dir.join(MANIFEST), b"{not json").expect("garbage");
        assert!(verify(&dir).expect_err("garbage").to_string().contains("not a manifest"));
    }

    #[test]
    fn the_newest_intact_checkpoint_is_chosen_past_damaged_ones() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut candidates = Vec::new();
        for step in [2u64, 4, 6] {
            let dir = tmp.path().join(format!("checkpoint-{step}"));
            folder(&dir);
            write_manifest(&dir).expect("manifest");
            candidates.push((step, dir));
        }
        assert_eq!(newest_intact(candidates.clone()).map(|c| c.0), Some(6));
        std::fs::write(candidates[2].1.join("a.bin"), b"x").expect("damage 6");
        std::fs::write(candidates[1].1.join("sub/b.json"), b"{\"x\": 2}").expect("damage 4");
        assert_eq!(newest_intact(candidates.clone()).map(|c| c.0), Some(2));
        std::fs::write(candidates[0].1.join("a.bin"), b"y").expect("damage 2");
        assert_eq!(newest_intact(candidates), None);
    }
}
