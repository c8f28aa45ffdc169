//! Tests of config loading, rules and resolution; and that the docs name every key.

use super::*;

fn load_text(text: &str) -> Result<Config> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("cachectl.toml");
    std::fs::write(&p, text).unwrap();
    let mut cfg = Config::builtin();
    cfg.apply_file(&p, false).map(|_| cfg)
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = load_text("max_size = \"1G\"\n\n[[rule]]\nmatch = \"x *\"\ninptus = [\"a\"]\n")
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cachectl.toml:5"), "{msg}");
    assert!(msg.contains("inptus"), "{msg}");
    assert!(err.is::<crate::error::UsageError>());
}

#[test]
fn bad_values_are_located() {
    let msg = format!("{:#}", load_text("\nttl = \"7x\"\n").unwrap_err());
    assert!(msg.contains(":2:") && msg.contains("ttl"), "{msg}");
    let msg = format!(
        "{:#}",
        load_text("compression_level = \"high\"\n").unwrap_err()
    );
    assert!(msg.contains(":1:"), "{msg}");
    let msg = format!("{:#}", load_text("max_size = \"lots\"\n").unwrap_err());
    assert!(msg.contains("max_size"), "{msg}");
}

#[test]
fn rules_match_and_flags_add() {
    let cfg = load_text(
        "ttl = \"1h\"\n[[rule]]\nmatch = \"./resize *\"\ninputs = [\"lib\"]\nnamespace = \"img\"\ncache_failures = true\n",
    )
    .unwrap();
    let args = RunArgs {
        inputs: vec!["img.png".into()],
        command: vec!["./resize".into(), "img.png".into()],
        ..Default::default()
    };
    let o = RunOptions::resolve(&args, &cfg).unwrap();
    assert_eq!(o.inputs, ["lib", "img.png"]);
    assert_eq!(o.namespace, "img");
    assert!(o.cache_failures);
    assert_eq!(o.ttl, Some(Duration::from_secs(3600)));
    let other = RunArgs {
        command: vec!["./other".into()],
        ..Default::default()
    };
    assert_eq!(
        RunOptions::resolve(&other, &cfg).unwrap().namespace,
        "default"
    );
}

#[test]
fn project_top_level_beats_a_user_rule() {
    let d = tempfile::tempdir().unwrap();
    let user = d.path().join("user.toml");
    let project = d.path().join("cachectl.toml");
    std::fs::write(
        &user,
        "[[rule]]\nmatch = \"*\"\nttl = \"1h\"\nnamespace = \"u\"\n",
    )
    .unwrap();
    std::fs::write(&project, "ttl = \"1d\"\n").unwrap();
    let mut cfg = Config::builtin();
    cfg.apply_file(&user, false).unwrap();
    cfg.apply_file(&project, false).unwrap();
    let args = RunArgs {
        command: vec!["x".into()],
        ..Default::default()
    };
    let o = RunOptions::resolve(&args, &cfg).unwrap();
    assert_eq!(o.ttl, Some(Duration::from_secs(86_400)));
    assert_eq!(
        o.namespace, "u",
        "what the project does not set, the user rule still sets"
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1024").unwrap(), 1024);
    assert_eq!(parse_size("500MiB").unwrap(), 500 * 1024 * 1024);
    assert_eq!(parse_size("5G").unwrap(), 5_000_000_000);
    assert!(parse_size("big").is_err());
}

/// The reference docs must name every key the config files accept (issue 8: a test fails if a
/// key is undocumented). The keys are taken from the real structs, through the error that
/// `deny_unknown_fields` gives for an unknown one.
mod documented {
    use super::*;

    fn accepted_keys(toml_text: &str) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cachectl.toml");
        std::fs::write(&p, toml_text).unwrap();
        let msg = format!("{:#}", Config::builtin().apply_file(&p, false).unwrap_err());
        let list = msg
            .split("expected one of")
            .nth(1)
            .expect("serde lists the fields");
        let list = list.lines().next().unwrap();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_config_key_is_documented() {
        let root = env!("CARGO_MANIFEST_DIR");
        let reference = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
        let example = std::fs::read_to_string(format!("{root}/cachectl.toml.example")).unwrap();
        let tables = [
            ("top level", "bogus_key = 1\n"),
            ("[[rule]]", "[[rule]]\nmatch = \"x\"\nbogus_key = 1\n"),
            ("[remote]", "[remote]\nbogus_key = 1\n"),
        ];
        for (table, text) in tables {
            let keys = accepted_keys(text);
            assert!(keys.len() > 3, "{table}: {keys:?}");
            for key in keys {
                let quoted = format!("`{key}`");
                let documented = [
                    quoted.clone(),
                    format!("{key} ="),
                    format!("`[{key}]`"),
                    format!("`[[{key}]]`"),
                ]
                .iter()
                .any(|form| reference.contains(form.as_str()));
                assert!(
                    documented,
                    "{table} key `{key}` is not documented in docs/configuration.md"
                );
                assert!(
                    example.contains(&format!("{key} ="))
                        || example.contains(&format!("[{key}]"))
                        || example.contains(&format!("[[{key}]]")),
                    "{table} key `{key}` is missing from cachectl.toml.example"
                );
            }
        }
    }
}
