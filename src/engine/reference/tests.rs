//! Tests of reference parsing, normalisation and pattern matching.
use super::ReferenceErrorKind as K;
use super::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// (input, Display, familiar(), domain, path, tag, name-only)
type ValidCase<'a> = (
    String,
    String,
    String,
    &'a str,
    &'a str,
    Option<&'a str>,
    bool,
);

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
}

#[test]
fn valid_references_normalise() {
    let dg = format!("sha256:{HEX}");
    let long_tag = "t".repeat(128);
    let max_path = "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len());
    // (input, Display, familiar(), domain, path, tag, name-only)
    let cases: Vec<ValidCase> = vec![
        (
            "ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
            "ubuntu:latest".into(),
            "docker.io",
            "library/ubuntu",
            Some("latest"),
            true,
        ),
        (
            "ubuntu:22.04".into(),
            "docker.io/library/ubuntu:22.04".into(),
            "ubuntu:22.04".into(),
            "docker.io",
            "library/ubuntu",
            Some("22.04"),
            false,
        ),
        (
            "user/app".into(),
            "docker.io/user/app:latest".into(),
            "user/app:latest".into(),
            "docker.io",
            "user/app",
            Some("latest"),
            true,
        ),
        (
            "docker.io/library/ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
            "ubuntu:latest".into(),
            "docker.io",
            "library/ubuntu",
            Some("latest"),
            true,
        ),
        (
            "docker.io/ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
            "ubuntu:latest".into(),
            "docker.io",
            "library/ubuntu",
            Some("latest"),
            true,
        ),
        (
            "index.docker.io/user/app".into(),
            "docker.io/user/app:latest".into(),
            "user/app:latest".into(),
            "docker.io",
            "user/app",
            Some("latest"),
            true,
        ),
        (
            "index.docker.io/busybox:1".into(),
            "docker.io/library/busybox:1".into(),
            "busybox:1".into(),
            "docker.io",
            "library/busybox",
            Some("1"),
            false,
        ),
        (
            "library/ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
            "ubuntu:latest".into(),
            "docker.io",
            "library/ubuntu",
            Some("latest"),
            true,
        ),
        (
            "docker.io/library/a/b".into(),
            "docker.io/library/a/b:latest".into(),
            "library/a/b:latest".into(),
            "docker.io",
            "library/a/b",
            Some("latest"),
            true,
        ),
        (
            "localhost/foo".into(),
            "localhost/foo:latest".into(),
            "localhost/foo:latest".into(),
            "localhost",
            "foo",
            Some("latest"),
            true,
        ),
        (
            "localhost:5000/foo:tag".into(),
            "localhost:5000/foo:tag".into(),
            "localhost:5000/foo:tag".into(),
            "localhost:5000",
            "foo",
            Some("tag"),
            false,
        ),
        (
            "127.0.0.1:5000/a/b".into(),
            "127.0.0.1:5000/a/b:latest".into(),
            "127.0.0.1:5000/a/b:latest".into(),
            "127.0.0.1:5000",
            "a/b",
            Some("latest"),
            true,
        ),
        (
            "[::1]:5000/x".into(),
            "[::1]:5000/x:latest".into(),
            "[::1]:5000/x:latest".into(),
            "[::1]:5000",
            "x",
            Some("latest"),
            true,
        ),
        (
            "[fe80::1:AB]/x:v1".into(),
            "[fe80::1:AB]/x:v1".into(),
            "[fe80::1:AB]/x:v1".into(),
            "[fe80::1:AB]",
            "x",
            Some("v1"),
            false,
        ),
        (
            format!("ubuntu@{dg}"),
            format!("docker.io/library/ubuntu@{dg}"),
            format!("ubuntu@{dg}"),
            "docker.io",
            "library/ubuntu",
            None,
            false,
        ),
        (
            format!("ubuntu:22.04@{dg}"),
            format!("docker.io/library/ubuntu:22.04@{dg}"),
            format!("ubuntu:22.04@{dg}"),
            "docker.io",
            "library/ubuntu",
            Some("22.04"),
            false,
        ),
        (
            format!("localhost:5000/ns/repo@{dg}"),
            format!("localhost:5000/ns/repo@{dg}"),
            format!("localhost:5000/ns/repo@{dg}"),
            "localhost:5000",
            "ns/repo",
            None,
            false,
        ),
        (
            "a/b/c/d".into(),
            "docker.io/a/b/c/d:latest".into(),
            "a/b/c/d:latest".into(),
            "docker.io",
            "a/b/c/d",
            Some("latest"),
            true,
        ),
        (
            "my__app".into(),
            "docker.io/library/my__app:latest".into(),
            "my__app:latest".into(),
            "docker.io",
            "library/my__app",
            Some("latest"),
            true,
        ),
        (
            "x-y---z9/my.app_v2".into(),
            "docker.io/x-y---z9/my.app_v2:latest".into(),
            "x-y---z9/my.app_v2:latest".into(),
            "docker.io",
            "x-y---z9/my.app_v2",
            Some("latest"),
            true,
        ),
        (
            "registry.example.com/team/app:v1.2.3-rc_1".into(),
            "registry.example.com/team/app:v1.2.3-rc_1".into(),
            "registry.example.com/team/app:v1.2.3-rc_1".into(),
            "registry.example.com",
            "team/app",
            Some("v1.2.3-rc_1"),
            false,
        ),
        (
            "Reg-1.Example.COM:443/app:Latest_X".into(),
            "Reg-1.Example.COM:443/app:Latest_X".into(),
            "Reg-1.Example.COM:443/app:Latest_X".into(),
            "Reg-1.Example.COM:443",
            "app",
            Some("Latest_X"),
            false,
        ),
        (
            "localhost".into(),
            "docker.io/library/localhost:latest".into(),
            "localhost:latest".into(),
            "docker.io",
            "library/localhost",
            Some("latest"),
            true,
        ),
        (
            "localhost:5000".into(),
            "docker.io/library/localhost:5000".into(),
            "localhost:5000".into(),
            "docker.io",
            "library/localhost",
            Some("5000"),
            false,
        ),
        (
            "example.com".into(),
            "docker.io/library/example.com:latest".into(),
            "example.com:latest".into(),
            "docker.io",
            "library/example.com",
            Some("latest"),
            true,
        ),
        (
            "abc123".into(),
            "docker.io/library/abc123:latest".into(),
            "abc123:latest".into(),
            "docker.io",
            "library/abc123",
            Some("latest"),
            true,
        ),
        (
            "x:_t".into(),
            "docker.io/library/x:_t".into(),
            "x:_t".into(),
            "docker.io",
            "library/x",
            Some("_t"),
            false,
        ),
        (
            format!("x:{long_tag}"),
            format!("docker.io/library/x:{long_tag}"),
            format!("x:{long_tag}"),
            "docker.io",
            "library/x",
            Some(long_tag.as_str()),
            false,
        ),
        (
            max_path.clone(),
            format!("docker.io/library/{max_path}:latest"),
            format!("{max_path}:latest"),
            "docker.io",
            "",
            Some("latest"),
            true,
        ),
    ];
    assert!(cases.len() >= 20);
    for (input, display, familiar, domain, path, tag, name_only) in cases {
        let re = r(&input);
        assert_eq!(re.to_string(), display, "display of {input}");
        assert_eq!(re.familiar(), familiar, "familiar of {input}");
        assert_eq!(re.domain(), domain, "domain of {input}");
        if !path.is_empty() {
            assert_eq!(re.path(), path, "path of {input}");
        }
        assert_eq!(re.tag(), tag, "tag of {input}");
        assert_eq!(re.is_name_only(), name_only, "name-only of {input}");
        assert_eq!(re.name(), format!("{}/{}", re.domain(), re.path()));
        // The normalised and familiar forms parse back to the same thing.
        assert_eq!(r(&display), re, "{display}");
        assert_eq!(r(&familiar), re, "{familiar}");
        assert_eq!(input.parse::<Reference>().ok(), Some(re));
    }
}

#[test]
fn names_and_accessors() {
    let cases = [
        ("ubuntu", "docker.io/library/ubuntu", "ubuntu"),
        ("user/app:1", "docker.io/user/app", "user/app"),
        (
            "localhost:5000/ns/repo",
            "localhost:5000/ns/repo",
            "localhost:5000/ns/repo",
        ),
        (
            "docker.io/library/a/b",
            "docker.io/library/a/b",
            "library/a/b",
        ),
    ];
    for (input, name, familiar_name) in cases {
        let re = r(input);
        assert_eq!(re.name(), name);
        assert_eq!(re.familiar_name(), familiar_name);
    }
    let d = r(&format!("ubuntu@sha256:{HEX}"));
    assert_eq!(d.digest().map(|d| d.hex()), Some(HEX));
    assert_eq!(d.tag(), None);
    assert_eq!(d.tag_or_latest(), "latest");
    assert_eq!(r("ubuntu:22.04").tag_or_latest(), "22.04");
    assert_eq!(r("ubuntu").digest(), None);
}

#[test]
fn invalid_references_say_why() {
    let tag129 = format!("ubuntu:{}", "a".repeat(129));
    let long_name = "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len() + 1);
    let long_host = format!("{}.com/{}", "h".repeat(200), "p".repeat(60));
    let cases: Vec<(String, K)> = vec![
        ("".into(), K::Empty),
        (" ubuntu".into(), K::Whitespace),
        ("ubu ntu".into(), K::Whitespace),
        ("ubuntu\n".into(), K::Whitespace),
        ("ubuntu:\t1".into(), K::Whitespace),
        (HEX.into(), K::ImageId),
        ("Ubuntu".into(), K::Uppercase),
        ("user/MyApp:1".into(), K::Uppercase),
        ("localhost/Foo".into(), K::Uppercase),
        ("a//b".into(), K::EmptyComponent),
        ("a/".into(), K::EmptyComponent),
        ("/a".into(), K::EmptyComponent),
        ("localhost/".into(), K::EmptyComponent),
        ("host:5000/".into(), K::EmptyComponent),
        ("ubuntu:".into(), K::MissingTag),
        (
            "ubuntu:@sha256:0".into(),
            K::InvalidDigest("a sha256 digest has 64 hex characters"),
        ),
        ("ubuntu@".into(), K::MissingDigest),
        (
            "ubuntu@sha256:abc".into(),
            K::InvalidDigest("a sha256 digest has 64 hex characters"),
        ),
        (
            format!("ubuntu@sha512:{HEX}"),
            K::InvalidDigest("only sha256 digests are supported"),
        ),
        (
            format!("ubuntu@{HEX}"),
            K::InvalidDigest("expected sha256:<64 hex characters>"),
        ),
        (
            format!("ubuntu@sha256:{}", HEX.to_uppercase()),
            K::InvalidDigest("only lowercase hex characters are allowed"),
        ),
        (
            format!("ubuntu@sha256:{HEX}@sha256:{HEX}"),
            K::InvalidDigest("a sha256 digest has 64 hex characters"),
        ),
        (":tag".into(), K::MissingName),
        (format!("@sha256:{HEX}"), K::MissingName),
        ("ubuntu:.tag".into(), K::TagBadStart(".tag".into())),
        ("ubuntu:-tag".into(), K::TagBadStart("-tag".into())),
        (tag129, K::TagTooLong(129)),
        ("ubuntu:a:b".into(), K::InvalidTag("a:b".into())),
        ("ubuntu:tag!".into(), K::InvalidTag("tag!".into())),
        (long_name, K::NameTooLong(256)),
        (long_host, K::NameTooLong(265)),
        ("-app".into(), K::InvalidComponent("-app".into())),
        ("app-".into(), K::InvalidComponent("app-".into())),
        ("a...b".into(), K::InvalidComponent("a...b".into())),
        ("a___b".into(), K::InvalidComponent("a___b".into())),
        ("a._b".into(), K::InvalidComponent("a._b".into())),
        ("u/_x".into(), K::InvalidComponent("_x".into())),
        ("ubü".into(), K::InvalidComponent("ubü".into())),
        ("-host.com/a".into(), K::InvalidDomain("-host.com".into())),
        ("host-.com/a".into(), K::InvalidDomain("host-.com".into())),
        ("host..com/a".into(), K::InvalidDomain("host..com".into())),
        ("ho_st.com/a".into(), K::InvalidDomain("ho_st.com".into())),
        (
            "host.com:abc/a".into(),
            K::InvalidDomain("host.com:abc".into()),
        ),
        ("host.com:/a".into(), K::InvalidDomain("host.com:".into())),
        ("[zz]:5000/a".into(), K::InvalidDomain("[zz]:5000".into())),
        ("[::1]5000/a".into(), K::InvalidDomain("[::1]5000".into())),
        ("[]/a".into(), K::InvalidDomain("[]".into())),
        ("[::1]".into(), K::MissingPath),
        ("[::1]:5000".into(), K::MissingPath),
    ];
    assert!(cases.len() >= 20);
    for (input, kind) in cases {
        match Reference::parse(&input) {
            Ok(re) => panic!("{input:?} accepted as {re}"),
            Err(e) => assert_eq!(e.kind, kind, "reason for {input:?}: {e}"),
        }
    }
}

#[test]
fn messages_say_what_is_wrong_and_what_is_right() {
    let e = Reference::parse("MyApp").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"MyApp\""), "{msg}");
    assert!(msg.contains("repository name must be lowercase"), "{msg}");
    let msg = Reference::parse(HEX).unwrap_err().to_string();
    assert!(msg.contains("image id, not a reference"), "{msg}");
    let msg = Reference::parse("ubuntu:").unwrap_err().to_string();
    assert!(msg.contains("ubuntu:22.04"), "{msg}");
    let msg = Reference::parse("").unwrap_err().to_string();
    assert!(msg.contains("[registry[:port]/]name[:tag]"), "{msg}");
    // Long input is cut in the message.
    let e = Reference::parse(&"a".repeat(300)).unwrap_err();
    assert_eq!(e.input.chars().count(), 101);
    assert!(e.input.ends_with('…'));
}

#[test]
fn with_tag_keeps_repository_and_digest() {
    let re = r("ubuntu").with_tag("22.04").unwrap();
    assert_eq!(re.to_string(), "docker.io/library/ubuntu:22.04");
    assert!(!re.is_name_only());
    let d = r(&format!("localhost:5000/app@sha256:{HEX}"))
        .with_tag("v2")
        .unwrap();
    assert_eq!(d.to_string(), format!("localhost:5000/app:v2@sha256:{HEX}"));
    let e = r("ubuntu").with_tag("-x").unwrap_err();
    assert_eq!(e.kind, K::TagBadStart("-x".into()));
    assert_eq!(e.input, "docker.io/library/ubuntu:-x");
    assert_eq!(r("ubuntu").with_tag("").unwrap_err().kind, K::MissingTag);
    assert_eq!(
        r("ubuntu").with_tag("a b").unwrap_err().kind,
        K::InvalidTag("a b".into())
    );
}

#[test]
fn equality_follows_the_normalised_form() {
    assert_eq!(r("ubuntu"), r("docker.io/library/ubuntu:latest"));
    assert!(r("ubuntu").is_name_only());
    assert!(!r("ubuntu:latest").is_name_only());
    assert_ne!(r("ubuntu:1"), r("ubuntu:2"));
    assert!(r("a:1") < r("b:1"));
    let mut set = std::collections::HashSet::new();
    set.insert(r("ubuntu"));
    assert!(set.contains(&r("index.docker.io/library/ubuntu:latest")));
}

#[test]
fn serde_uses_the_normalised_string() {
    let re = r("user/app:1");
    let j = serde_json::to_string(&re).unwrap();
    assert_eq!(j, "\"docker.io/user/app:1\"");
    assert_eq!(serde_json::from_str::<Reference>(&j).unwrap(), re);
    assert!(serde_json::from_str::<Reference>("\"Bad\"").is_err());
}

#[test]
fn short_id_candidates() {
    for yes in [
        "a",
        "0123456789ab",
        HEX,
        &format!("sha256:{HEX}"),
        "sha256:e3b0",
    ] {
        assert!(is_short_id_candidate(yes), "{yes}");
    }
    let too_long = format!("{HEX}0");
    for no in [
        "",
        "sha256:",
        "E3B0",
        "e3b0g",
        "ubuntu",
        "sha512:e3b0",
        &too_long,
        "sha256:x",
    ] {
        assert!(!is_short_id_candidate(no), "{no}");
    }
}

#[test]
fn pattern_matching() {
    let dg = format!("sha256:{HEX}");
    // (reference, pattern, matches)
    let cases: Vec<(String, &str, bool)> = vec![
        ("ubuntu:latest".into(), "ubuntu", true),
        ("ubuntu:22.04".into(), "ubuntu", true),
        ("ubuntu".into(), "ubuntu:latest", true),
        ("ubuntu:22.04".into(), "ubuntu:2*", true),
        ("ubuntu:latest".into(), "ubuntu:2*", false),
        ("ubuntu:20.04".into(), "ubuntu:2?.04", true),
        ("user/app:1".into(), "*/app", true),
        ("ubuntu".into(), "*/app", false),
        ("user/app".into(), "*", false),
        ("ubuntu".into(), "*", true),
        ("ubuntu".into(), "ubunt?", true),
        ("ubuntu".into(), "ubu", false),
        ("ubuntu".into(), "[a-u]buntu", true),
        ("ubuntu".into(), "[^u]buntu", false),
        ("ubuntu".into(), "[", false),
        ("ubuntu".into(), "[]ubuntu", false),
        ("ubuntu".into(), "\\ubuntu", true),
        ("ubuntu".into(), "docker.io/library/ubuntu", false),
        ("localhost:5000/foo:tag".into(), "localhost:5000/*", true),
        ("localhost:5000/foo:tag".into(), "localhost:5000/*:t*", true),
        ("localhost:5000/foo:tag".into(), "localhost:*/foo", true),
        ("a/b/c".into(), "a/*", false),
        ("a/b/c".into(), "a/*/*", true),
        ("user/app:v1".into(), "user/*:v*", true),
        (format!("ubuntu@{dg}"), "ubuntu", true),
        (format!("ubuntu@{dg}"), "ubuntu:*", false),
        (format!("ubuntu@{dg}"), "ubuntu@sha256:e3b0*", true),
        (format!("ubuntu:22.04@{dg}"), "ubuntu:22.04", true),
        (format!("ubuntu:22.04@{dg}"), "ubuntu:22.04@*", true),
    ];
    for (reference, pattern, want) in cases {
        assert_eq!(
            r(&reference).matches_pattern(pattern),
            want,
            "{reference} ~ {pattern}"
        );
    }
    // Many stars against a long name stay fast.
    let long = r(&format!("{}b", "a".repeat(200)));
    assert!(!long.matches_pattern(&"*a".repeat(40)));
}
