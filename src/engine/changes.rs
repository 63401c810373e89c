//! `-c` changes for `import` and `commit`: the Dockerfile instructions
//! CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR and ONBUILD,
//! applied to an image's runtime config (Docker's `config` object).

use serde_json::{json, Map, Value};

use super::{EngineError, Result};

fn bad(instr: &str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidChange {
        instruction: instr.to_string(),
        reason: reason.into(),
    }
}

/// JSON array form (`["a","b"]`) or shell form (`/bin/sh -c "..."`).
fn command(instr: &str, args: &str) -> Result<Value> {
    let t = args.trim();
    if t.starts_with('[') {
        let v: Vec<String> = serde_json::from_str(t)
            .map_err(|e| bad(instr, format!("not a JSON array of strings: {e}")))?;
        return Ok(json!(v));
    }
    Ok(json!(["/bin/sh", "-c", t]))
}

/// Splits `k=v k2="v 2"` (or the legacy `k v` form when `legacy`).
fn pairs(instr: &str, args: &str, legacy: bool) -> Result<Vec<(String, String)>> {
    let t = args.trim();
    if legacy && !t.split_whitespace().next().unwrap_or("").contains('=') {
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(instr, "expected KEY VALUE or KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    for word in shell_words(t).map_err(|r| bad(instr, r))? {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| bad(instr, format!("{word:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(bad(instr, "empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Words split on blanks, with "double" and 'single' quotes and \ escapes.
fn shell_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn obj<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = cfg.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Applies one instruction to `cfg` (Docker's runtime config object).
///
/// # Errors
/// [`EngineError::InvalidChange`] for an unknown instruction or bad arguments.
pub fn apply(cfg: &mut Map<String, Value>, change: &str) -> Result<()> {
    let t = change.trim();
    let (word, args) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let instr = word.to_ascii_uppercase();
    if args.trim().is_empty() {
        return Err(bad(change, format!("{instr} needs arguments")));
    }
    match instr.as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), command(change, args)?);
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), command(change, args)?);
        }
        "ENV" => {
            let env = cfg.entry("Env".to_string()).or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad(change, "existing Env is not a list"))?;
            for (k, v) in pairs(change, args, true)? {
                list.retain(|e| e.as_str().is_none_or(|s| s.split_once('=').map(|p| p.0) != Some(&k)));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            for (k, v) in pairs(change, args, false)? {
                obj(cfg, "Labels").insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            for p in args.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let ok = !port.is_empty() && port.split('-').all(|n| n.parse::<u16>().is_ok()) && matches!(proto, "tcp" | "udp" | "sctp");
                if !ok {
                    return Err(bad(change, format!("{p:?} is not PORT[/tcp|udp|sctp]")));
                }
                obj(cfg, "ExposedPorts").insert(format!("{port}/{proto}"), json!({}));
            }
        }
        "USER" => {
            cfg.insert("User".into(), json!(args.trim()));
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(args.trim()));
        }
        "VOLUME" => {
            let vols: Vec<String> = if args.trim().starts_with('[') {
                serde_json::from_str(args.trim()).map_err(|e| bad(change, format!("not a JSON array of strings: {e}")))?
            } else {
                args.split_whitespace().map(str::to_string).collect()
            };
            for v in vols {
                obj(cfg, "Volumes").insert(v, json!({}));
            }
        }
        "ONBUILD" => {
            let inner = args.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(bad(change, format!("{inner} is not allowed as an ONBUILD trigger")));
            }
            let list = cfg.entry("OnBuild".to_string()).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Value::Array(l) = list {
                l.push(json!(args.trim()));
            }
        }
        other => return Err(bad(change, format!("{other} is not supported: use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR or ONBUILD"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_every_instruction() {
        let mut c = Map::new();
        for ch in [
            "CMD [\"nginx\",\"-g\",\"daemon off;\"]",
            "ENTRYPOINT /docker-entrypoint.sh",
            "ENV PATH=/usr/bin A=\"x y\"",
            "ENV LEGACY some value",
            "ENV A=z",
            "EXPOSE 80 443/tcp 53/udp",
            "LABEL maintainer=\"me <me@x>\" version=1",
            "USER nobody",
            "VOLUME [\"/data\", \"/logs\"]",
            "VOLUME /cache",
            "WORKDIR /srv",
            "onbuild RUN make",
        ] {
            apply(&mut c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        }
        let v = Value::Object(c);
        assert_eq!(v["Cmd"], json!(["nginx", "-g", "daemon off;"]));
        assert_eq!(
            v["Entrypoint"],
            json!(["/bin/sh", "-c", "/docker-entrypoint.sh"])
        );
        assert_eq!(
            v["Env"],
            json!(["PATH=/usr/bin", "LEGACY=some value", "A=z"])
        );
        assert_eq!(
            v["ExposedPorts"],
            json!({"80/tcp": {}, "443/tcp": {}, "53/udp": {}})
        );
        assert_eq!(
            v["Labels"],
            json!({"maintainer": "me <me@x>", "version": "1"})
        );
        assert_eq!(v["User"], json!("nobody"));
        assert_eq!(
            v["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}})
        );
        assert_eq!(v["WorkingDir"], json!("/srv"));
        assert_eq!(v["OnBuild"], json!(["RUN make"]));
    }

    #[test]
    fn refuses_what_it_cannot_apply() {
        let mut c = Map::new();
        for ch in [
            "RUN make",
            "CMD",
            "EXPOSE http",
            "EXPOSE 99999",
            "ENV =x",
            "LABEL novalue",
            "CMD [\"unterminated\"",
            "ONBUILD FROM x",
            "LABEL a=\"open",
        ] {
            let e = apply(&mut c, ch).unwrap_err();
            assert!(matches!(e, EngineError::InvalidChange { .. }), "{ch}: {e}");
        }
    }
}
