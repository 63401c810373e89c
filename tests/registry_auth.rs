//! Credentials and transport security of `pull`, `push`, `login` and
//! `logout`: htpasswd (basic) auth on docker-registry, the token flow with
//! our token server (and token refresh when tokens expire during a pull),
//! the credentials file (Docker's shape, mode 0600, no plaintext password,
//! removed by logout), credentials never printed nor sent to another host
//! on a redirect, TLS with a per-registry CA from `certs_dir`, and plain
//! HTTP only for localhost or registries listed as `insecure`.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use engine_common::*;
use registry_common::*;

const AUTH_WORDS: [&str; 4] = ["unauthorized", "denied", "authentication", "401"];

/// Fails, mentioning an authentication problem.
#[track_caller]
fn auth_error(r: &Run) {
    assert_ne!(r.code, 0, "{} succeeded: {}", r.what, r.stdout);
    let e = r.stderr.to_lowercase();
    assert!(
        AUTH_WORDS.iter().any(|w| e.contains(w)),
        "{}: {}",
        r.what,
        r.stderr
    );
}

/// Asserts the password appears nowhere in a run's output.
#[track_caller]
fn no_secret(r: &Run, secret: &str) {
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "{} printed the password",
        r.what
    );
}

#[test]
fn basic_auth_login_push_pull_logout() {
    if !have_registry() {
        return;
    }
    let pass = "s3cret-Pa55";
    let reg = DistRegistry::start(Auth::Basic {
        user: "alice",
        pass,
    });
    let c = Client::new();
    let id = c.env.import(&[("auth/f", b"basic")], Some("local/b:1"));
    let r = format!("{}/priv/b:1", reg.host);
    c.run(&["tag", "local/b:1", &r]).ok();
    // Without login: refused.
    auth_error(&c.run(&["push", &r]));
    let before = c.env.state();
    auth_error(&c.run(&["pull", &r]));
    c.assert_untouched(&before);
    // Wrong password: refused, nothing stored.
    let bad = c.run(&["login", "-u", "alice", "-p", "wrong", &reg.host]);
    auth_error(&bad);
    assert!(c.auths()["auths"].get(&reg.host).is_none(), "{}", c.auths());
    // Right password on stdin.
    let ok = c.run_stdin(
        &["login", "-u", "alice", "--password-stdin", &reg.host],
        format!("{pass}\n").as_bytes(),
    );
    let ok = ok.ok();
    assert!(ok.stdout.contains("Login Succeeded"), "{}", ok.stdout);
    no_secret(&ok, pass);
    let mode = std::fs::metadata(&c.auth_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "auth file mode {mode:o}");
    let auths = c.auths();
    assert_eq!(
        auths["auths"][&reg.host]["auth"],
        b64(format!("alice:{pass}").as_bytes()),
        "{auths}"
    );
    let text = std::fs::read_to_string(&c.auth_file).unwrap();
    assert!(
        !text.contains(pass),
        "plaintext password in the auth file: {text}"
    );
    // Push and pull now work.
    let p = c.run(&["push", &r]).ok();
    no_secret(&p, pass);
    c.run(&["rmi", &r]).ok();
    let p = c.run(&["pull", &r]).ok();
    no_secret(&p, pass);
    assert_eq!(c.env.inspect(&r)["Id"], id);
    // Logout removes the entry (and only it).
    let auths_other = serde_json::json!({"auths": {
        "other.example:5000": {"auth": b64(b"x:y")},
        (reg.host.clone()): auths["auths"][&reg.host].clone(),
    }});
    std::fs::write(&c.auth_file, auths_other.to_string()).unwrap();
    c.run(&["logout", &reg.host]).ok();
    let after = c.auths();
    assert!(after["auths"].get(&reg.host).is_none(), "{after}");
    assert_eq!(after["auths"]["other.example:5000"]["auth"], b64(b"x:y"));
    c.run(&["rmi", &r]).ok();
    let before = c.env.state();
    auth_error(&c.run(&["pull", &r]));
    c.assert_untouched(&before);
    // -p works as well.
    let ok = c.run(&["login", "-u", "alice", "-p", pass, &reg.host]).ok();
    assert!(ok.stdout.contains("Login Succeeded"));
    no_secret(&ok, pass);
}

#[test]
fn token_auth_push_pull_and_refresh() {
    if !have_registry() {
        return;
    }
    let ts = TokenServer::start("bob", "hunter2");
    let reg = DistRegistry::start(Auth::Token(&ts));
    let rec = Recorder::start(&reg.host);
    let c = Client::with_registry(&format!("{FAST}max_concurrent_downloads = 1\n"));
    // Four layers: an import and three commits.
    c.env.import(&[("tok/0", b"zero")], Some("local/t:0"));
    for i in 1..4 {
        c.run(&["create", "--name", "work", &format!("local/t:{}", i - 1)])
            .ok();
        let m = c.run(&["mount", "work"]).ok().stdout.trim().to_string();
        std::fs::write(
            std::path::Path::new(&m).join(format!("f{i}")),
            noise(&format!("tok{i}"), 5000),
        )
        .unwrap();
        c.run(&["commit", "work", &format!("local/t:{i}")]).ok();
        c.run(&["rm", "-f", "work"]).ok();
    }
    let id = c.env.inspect("local/t:3")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = format!("{}/tok/img:1", rec.host());
    c.run(&["tag", "local/t:3", &r]).ok();
    auth_error(&c.run(&["push", &r]));
    auth_error(&c.run(&["login", "-u", "bob", "-p", "nope", &rec.host()]));
    assert!(c.auths()["auths"].get(rec.host()).is_none());
    let ok = c
        .run(&["login", "-u", "bob", "-p", "hunter2", &rec.host()])
        .ok();
    assert!(ok.stdout.contains("Login Succeeded"));
    c.run(&["push", &r]).ok();
    assert!(
        ts.log().iter().any(|t| t.granted
            && t.scopes
                .iter()
                .any(|s| s.starts_with("repository:tok/img:") && s.contains("push"))),
        "{:?}",
        ts.log()
    );

    // Tokens live 1 s; each blob GET takes 0.7 s: the pull outlives its token.
    ts.set_expires_in(1);
    *rec.blob_delay.lock().unwrap() = Duration::from_millis(700);
    let b = Client::with_registry(&format!("{FAST}max_concurrent_downloads = 1\n"));
    std::fs::copy(&c.auth_file, &b.auth_file).unwrap();
    let n0 = ts.log().len();
    rec.clear();
    b.run(&["pull", &r]).ok();
    assert_eq!(b.env.inspect(&r)["Id"], id);
    let pull_tokens: Vec<TokenReq> = ts.log()[n0..].to_vec();
    assert!(
        pull_tokens.iter().filter(|t| t.granted).count() >= 2,
        "a new token was fetched when the first expired: {pull_tokens:?}"
    );
    assert!(pull_tokens.iter().all(|t| t.user.as_deref() == Some("bob")));
    let bearers: BTreeSet<String> = rec
        .log()
        .iter()
        .filter(|l| l.path().contains("/blobs/"))
        .filter_map(|l| l.header("authorization").map(str::to_string))
        .collect();
    assert!(
        bearers.len() >= 2,
        "blob GETs carried {} distinct tokens",
        bearers.len()
    );
    // Only the first, anonymous request is challenged: no token was ever
    // used after it expired (the client refreshed it beforehand).
    let refused: Vec<String> = rec
        .log()
        .iter()
        .filter(|l| l.status == 401 && l.header("authorization").is_some())
        .map(|l| l.target.clone())
        .collect();
    assert!(refused.is_empty(), "tokens refused: {refused:?}");
}

#[test]
fn credentials_are_not_sent_along_a_redirect_to_another_host() {
    let fs = FaultServer::start();
    let img = RegImage::oci("redir", host_arch(), &[50_000, 100]);
    fs.put_image("r/img", "1", &img);
    fs.require_basic("carol", "pw-carol-123");
    let bh = BlobHost::start("127.0.0.3");
    let l = img.layer_digests()[0].clone();
    bh.put(&img.layers[0]);
    fs.fault(
        Fault::Redirect {
            digest: l.clone(),
            base: bh.base(),
        },
        usize::MAX,
    );
    let c = Client::new();
    let login = c
        .run(&["login", "-u", "carol", "-p", "pw-carol-123", &fs.host()])
        .ok();
    no_secret(&login, "pw-carol-123");
    let r = format!("{}/r/img:1", fs.host());
    let out = c.run(&["pull", &r]).ok();
    no_secret(&out, "pw-carol-123");
    c.assert_image(&r, &img);
    let hl = bh.log.lock().unwrap().clone();
    assert!(!hl.is_empty(), "the redirect was followed");
    assert!(
        hl.iter().all(|(_, a)| a.is_none()),
        "Authorization sent to the other host: {hl:?}"
    );
    // The registry itself got the credentials.
    assert!(fs.requests("GET", &l).iter().any(|x| x.status == 307));
}

#[test]
fn tls_registry_trusted_through_certs_dir() {
    if !have_registry() {
        return;
    }
    let reg = DistRegistry::start_tls(Auth::None);
    let c = Client::new();
    let id = c.env.import(&[("tls/f", b"over tls")], Some("local/tls:1"));
    let r = format!("{}/sec/img:1", reg.host);
    c.run(&["tag", "local/tls:1", &r]).ok();
    // Not trusted: refused (no silent fallback to plain HTTP).
    let empty = c.env.dir.path().join("no-certs");
    std::fs::create_dir(&empty).unwrap();
    c.set_registry(&format!("{FAST}certs_dir = \"{}\"\n", empty.display()));
    let f = c.run(&["push", &r]);
    assert_ne!(f.code, 0, "push to an untrusted TLS registry succeeded");
    assert!(
        !reg.log().contains("PUT /v2/sec/img/manifests"),
        "nothing pushed"
    );
    // Trusted through certs_dir/<host:port>/ca.crt.
    let certs = reg.certs_dir(c.env.dir.path());
    c.set_registry(&format!("{FAST}certs_dir = \"{}\"\n", certs.display()));
    let d = push_line(&c.run(&["push", &r]).ok()).0;
    let b = Client::with_registry(&format!("{FAST}certs_dir = \"{}\"\n", certs.display()));
    let out = b.run(&["pull", &r]).ok();
    assert_eq!(digest_line(&out), Some(d));
    assert_eq!(b.env.inspect(&r)["Id"], id);
    assert_eq!(b.rootfs(&r)["tls/f"], b"over tls");
}

#[test]
fn plain_http_only_for_localhost_or_insecure_registries() {
    // A plain-HTTP registry on 127.0.0.2 (not "localhost").
    let fs = FaultServer::start_on("127.0.0.2");
    let img = RegImage::oci("insecure", host_arch(), &[100]);
    fs.put_image("i/img", "1", &img);
    let r = format!("{}/i/img:1", fs.host());
    let c = Client::seeded();
    let before = c.env.state();
    let f = c.run(&["pull", &r]);
    assert_ne!(f.code, 0, "plain HTTP to 127.0.0.2 without `insecure`");
    c.assert_untouched(&before);
    assert!(
        fs.log().iter().all(|l| l.status != 200),
        "no plain-HTTP request answered: {:?}",
        fs.log()
    );
    c.set_registry(&format!("{FAST}insecure = [\"{}\"]\n", fs.host()));
    c.run(&["pull", &r]).ok();
    c.assert_image(&r, &img);
}
