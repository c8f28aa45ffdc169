//! Human descriptions of key components, shared by `run --explain` and `cachectl explain`.

use super::KeyComponents;
use crate::paths::display_encoded;

/// Human lines describing each component: name, digest prefix, detail (and one line per env var
/// and input below). Shared by `run --explain` and `explain`.
pub fn describe_components(c: &KeyComponents, command_line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, digest) in c.component_digests() {
        let detail = match name {
            "namespace" => c.namespace.clone(),
            "salt" => format!("{:?}", c.salt),
            "argv" => command_line.to_owned(),
            "cwd" => c
                .cwd
                .as_deref()
                .map(display_encoded)
                .unwrap_or_else(|| "(not keyed: --no-cwd)".into()),
            "exe" => match &c.exe {
                Some(e) => format!("{} ({})", display_encoded(&e.path), e.check.as_str()),
                None => "(not found)".into(),
            },
            "env" => format!("{} variable(s)", c.env.len()),
            "inputs" => format!("{} path(s)", c.inputs.len()),
            "outputs" => format!("{} declared", c.outputs.len()),
            "stdin" if c.stdin.is_some() => "hashed (--stdin)".into(),
            "stdin" => "(not keyed: /dev/null)".into(),
            _ => String::new(),
        };
        out.push(format!("  {name:<9} {}  {detail}", &digest[..12]));
        if name == "env" {
            for (k, v) in &c.env {
                let v = v.as_deref().map(|d| &d[..12]).unwrap_or("unset");
                out.push(format!("      {} = {v}", display_encoded(k)));
            }
        }
        if name == "inputs" {
            for (p, st) in &c.inputs {
                let digest = if st.digest.is_empty() {
                    "-"
                } else {
                    &st.digest[..12]
                };
                let kind = format!("{:?}", st.kind).to_lowercase();
                let exec = if st.exec { " +x" } else { "" };
                out.push(format!(
                    "      {kind:<7} {digest:<12}{exec}  {}",
                    display_encoded(p)
                ));
            }
        }
    }
    out
}
