use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn fields(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid(p) => p.into_iter().map(|p| p.field).collect(),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn defaults_are_valid_and_match_the_interface_contract() {
    let c = Config::default().finish(vec![]).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9000");
    assert_eq!(c.server.admin_listen, "127.0.0.1:9001");
    assert_eq!(c.server.data_dir, Path::new("./rewind-data"));
    assert!(c.upstream.endpoint.is_none(), "embedded upstream by default");
    assert!(c.protection.covers("anything"), "all buckets protected by default");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [server]
        listen = "nowhere"
        max_connections = 0
        base_domains = ["ok.example", "bad domain"]
        [upstream]
        endpoint = "ftp://x"
        [[credentials.client_keys]]
        access_key_id = "AKIA1"
        secret_access_key_file = "/nonexistent/secret"
    "#;
    let c = Config::from_toml(text, Path::new("t.toml")).unwrap();
    let got = fields(c.finish(vec![]).unwrap_err());
    for want in [
        "server.listen",
        "server.max_connections",
        "server.base_domains",
        "upstream.endpoint",
        "credentials.client_keys[0].secret_access_key_file",
        "credentials.client_keys[0]",
    ] {
        assert!(got.iter().any(|f| f == want), "missing {want} in {got:?}");
    }
}

#[test]
fn unknown_fields_and_bad_units_are_parse_errors_with_location() {
    let err = Config::from_toml("[server]\nlisten_addr = \"x\"\n", Path::new("c.toml")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("c.toml") && msg.contains("listen_addr"), "{msg}");

    let err = Config::from_toml("[server]\nshutdown_grace = \"soon\"\n", Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("not a duration"), "{err}");
    let c = Config::from_toml("[server]\nmax_xml_body_size = \"1MiB\"\nshutdown_grace = \"2m\"\n", Path::new("c.toml"))
        .unwrap();
    assert_eq!(c.server.max_xml_body_size, ByteSize::mib(1));
    assert_eq!(c.server.shutdown_grace, HumanDuration::secs(120));
}

#[test]
fn env_overrides_file_and_secrets_come_from_env_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("upstream-secret");
    std::fs::write(&secret_file, "from-file-secret-value\n").unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:7000\"\n[upstream]\nendpoint = \"http://127.0.0.1:1\"\naccess_key_id = \"up\"\nsecret_access_key_file = {:?}\n",
        secret_file
    );
    let mut c = Config::from_toml(&text, Path::new("c.toml")).unwrap();
    let problems = c.apply_env(env_of(&[
        ("REWIND_LISTEN", "127.0.0.1:7100"),
        ("REWIND_ACCESS_KEY_ID", "CLIENTKEY1"),
        ("REWIND_SECRET_ACCESS_KEY", "client-secret-0123456789"),
        ("REWIND_LOG_FORMAT", "json"),
    ]));
    let c = c.finish(problems).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:7100");
    assert_eq!(c.telemetry.log_format, LogFormat::Json);
    assert_eq!(c.upstream.secret_access_key.as_ref().unwrap().expose(), "from-file-secret-value");
    assert_eq!(c.credentials.client_keys.len(), 1);
    let printed = format!("{c:?}");
    assert!(!printed.contains("from-file-secret-value") && !printed.contains("client-secret"), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[test]
fn half_set_credentials_and_bad_env_values_are_problems() {
    let mut c = Config::default();
    let problems = c.apply_env(env_of(&[("REWIND_ACCESS_KEY_ID", "ONLYID"), ("REWIND_LOG_FORMAT", "xml")]));
    let got = fields(c.finish(problems).unwrap_err());
    assert!(got.contains(&"REWIND_ACCESS_KEY_ID/REWIND_SECRET_ACCESS_KEY".to_string()), "{got:?}");
    assert!(got.contains(&"REWIND_LOG_FORMAT".to_string()), "{got:?}");

    let mut c = Config::default();
    c.upstream.endpoint = Some("http://127.0.0.1:1".into());
    c.upstream.access_key_id = Some("id".into());
    assert_eq!(fields(c.finish(vec![]).unwrap_err()), ["upstream.access_key_id"]);
}

#[test]
fn protection_patterns() {
    let p = ProtectionConfig { buckets: vec!["prod-*".into(), "ledger".into()], ..Default::default() };
    assert!(p.covers("prod-eu") && p.covers("ledger"));
    assert!(!p.covers("ledger2") && !p.covers("dev-prod"));
    let mut c = Config::default();
    c.protection.buckets = vec!["a*b*".into()];
    assert_eq!(fields(c.finish(vec![]).unwrap_err()), ["protection.buckets"]);
}

#[test]
fn log_level_typos_are_caught() {
    let mut c = Config::default();
    c.telemetry.log_level = "info,rewind_gateway=verbose".into();
    assert_eq!(fields(c.finish(vec![]).unwrap_err()), ["telemetry.log_level"]);
    let mut c = Config::default();
    c.telemetry.log_level = "warn,rewind_gateway=debug,hyper".into();
    assert!(c.finish(vec![]).is_ok());
}

#[test]
fn workers_are_half_the_cores_unless_set() {
    let mut server = ServerConfig::default();
    assert_eq!([1, 2, 8, 9].map(|cores| server.workers(cores)), [1, 1, 4, 4]);
    server.worker_threads = 3;
    assert_eq!([1, 8].map(|cores| server.workers(cores)), [3, 3]);
}

/// The shipped example must parse, validate, and mention every option of the schema.
#[test]
fn example_config_parses_and_documents_every_option() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rewind.example.toml");
    let example = Config::from_file(&path).unwrap();
    assert!(example.finish(vec![]).is_ok(), "the example must be a valid configuration");

    let text = std::fs::read_to_string(&path).unwrap();
    // Optional settings serialize only when set, so set them all.
    let mut full = Config::default();
    full.upstream.endpoint = Some("http://127.0.0.1:1".into());
    full.upstream.access_key_id = Some("id".into());
    full.upstream.secret_access_key_file = Some("/f".into());
    full.vault.location = Some("/v".into());
    full.vault.endpoint = Some("http://127.0.0.1:2".into());
    full.vault.access_key_id = Some("id".into());
    full.vault.secret_access_key_file = Some("/f".into());
    full.vault.key_file = Some("/k".into());
    full.credentials.admin_token_file = Some("/t".into());
    full.journal.url = Some("postgres://u@h/d".into());
    full.journal.password_file = Some("/p".into());
    let schema = toml::Value::try_from(full).unwrap();
    let mut missing = Vec::new();
    for (section, table) in schema.as_table().unwrap() {
        if !text.contains(&format!("[{section}]")) && !text.contains(&format!("[[{section}.")) {
            missing.push(section.clone());
        }
        for field in table.as_table().unwrap().keys() {
            if !text.contains(&format!("{field} =")) {
                missing.push(format!("{section}.{field}"));
            }
        }
    }
    for field in ["access_key_id =", "secret_access_key_file ="] {
        assert!(text.contains(field), "example lacks client key field {field}");
    }
    assert!(missing.is_empty(), "deploy/rewind.example.toml does not document: {missing:?}");
    // What the example sets is the default, so it doubles as the reference of defaults.
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let shown = toml::Value::try_from(Config::from_file(&path).unwrap()).unwrap();
    assert_eq!(shown, defaults, "deploy/rewind.example.toml must show the defaults");
}

#[test]
fn s3_vaults_need_an_endpoint_and_their_own_keys() {
    let mut c = Config::default();
    c.vault.location = Some("s3://vault-bucket/site-a".into());
    c.vault.compression_level = 25;
    let got: Vec<String> = c.validate().into_iter().map(|p| p.field).collect();
    for want in ["vault.endpoint", "vault.access_key_id", "vault.compression_level"] {
        assert!(got.iter().any(|f| f == want), "missing {want} in {got:?}");
    }
    assert_eq!(c.vault.s3_location(), Some(("vault-bucket", "site-a")));

    c.vault.compression_level = 1;
    c.upstream.endpoint = Some("http://127.0.0.1:1".into());
    c.upstream.access_key_id = Some("SAME".into());
    c.upstream.secret_access_key = Some(Secret::new("x".repeat(20)));
    c.vault.endpoint = c.upstream.endpoint.clone();
    c.vault.access_key_id = Some("SAME".into());
    c.vault.secret_access_key = Some(Secret::new("y".repeat(20)));
    let problems = c.validate();
    assert!(problems.iter().any(|p| p.message.contains("upstream's credentials")), "{problems:?}");
    c.vault.access_key_id = Some("VAULTONLY".into());
    assert!(c.validate().is_empty(), "{:?}", c.validate());
}

#[test]
fn vault_env_overrides_apply() {
    let env: std::collections::HashMap<&str, &str> = [
        ("REWIND_VAULT", "/srv/vault"),
        ("REWIND_KEY_FILE", "/etc/k"),
        ("REWIND_VAULT_PASSPHRASE", "correct horse battery"),
    ]
    .into();
    let mut c = Config::default();
    assert!(c.apply_env(|n| env.get(n).map(|v| v.to_string())).is_empty());
    assert_eq!(c.vault.location.as_deref(), Some("/srv/vault"));
    assert_eq!(c.vault.key_file.as_deref(), Some(Path::new("/etc/k")));
    assert_eq!(c.vault.passphrase.as_ref().map(|p| p.expose().to_owned()).as_deref(), Some("correct horse battery"));
    assert!(!format!("{c:?}").contains("horse"), "the passphrase must print redacted");
}

/// Review F3: `REWIND_ADMIN_TOKEN=` (an empty line in an env file) opened the admin API,
/// and a one-character token was accepted.
#[test]
fn admin_tokens_shorter_than_32_characters_are_refused() {
    for token in ["", "a", &"x".repeat(31)] {
        let mut c = Config::default();
        let problems = c.apply_env(|n| (n == "REWIND_ADMIN_TOKEN").then(|| token.to_owned()));
        let err = c.finish(problems).unwrap_err().to_string();
        assert!(err.contains("at least 32 characters"), "{token:?}: {err}");
    }
    let mut c = Config::default();
    let problems = c.apply_env(|n| (n == "REWIND_ADMIN_TOKEN").then(|| "y".repeat(32)));
    assert!(c.finish(problems).is_ok());
}

#[test]
fn retention_policies_below_the_floor_are_refused_and_buckets_override_the_default() {
    let text = r#"
[retention]
keep_all_within = "2h"
keep_daily = 7
min_keep_all_within = "1h"

[retention.buckets.logs]
keep_all_within = "30m"

[retention.buckets.archive]
keep_yearly = 10
"#;
    let config = Config::from_toml(text, Path::new("test.toml")).unwrap();
    assert_eq!(fields(config.clone().finish(vec![]).unwrap_err()), ["retention.buckets.logs.keep_all_within"]);
    let archive = config.retention.policy("archive");
    assert_eq!((archive.keep_all_within, archive.keep_daily, archive.keep_yearly), (Duration::from_secs(7200), 7, 10));
    assert_eq!(config.retention.policy("other").keep_yearly, 0);

    // From the environment: 0s is a duration; a floor of 0s allows it; nonsense is reported.
    let mut config = Config::default();
    let env = env_of(&[
        ("REWIND_RETENTION_KEEP_ALL_WITHIN", "0s"),
        ("REWIND_RETENTION_MIN_KEEP_ALL_WITHIN", "0s"),
        ("REWIND_RETENTION_KEEP_HOURLY", "24"),
    ]);
    assert!(config.apply_env(env).is_empty());
    assert_eq!((config.retention.keep_all_within.0, config.retention.keep_hourly), (Duration::ZERO, 24));
    assert!(config.clone().finish(vec![]).is_ok());
    let problems =
        config.apply_env(env_of(&[("REWIND_RETENTION_GC_GRACE", "a day"), ("REWIND_RETENTION_KEEP_DAILY", "-1")]));
    let named: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(named, ["REWIND_RETENTION_GC_GRACE", "REWIND_RETENTION_KEEP_DAILY"]);
    // The default policy is above the default floor.
    let defaults = Config::default();
    assert!(defaults.retention.keep_all_within.0 >= defaults.retention.min_keep_all_within.0);
}

#[test]
fn mirrors_come_from_the_file_env_and_flags_and_inherit_the_primarys_s3_settings() {
    let text = r#"
[vault]
location = "s3://primary/p"
endpoint = "http://127.0.0.1:9"
access_key_id = "VAULTKEY"
[[vault.mirrors]]
location = "/mnt/usb/rewind"
[[vault.mirrors]]
location = "s3://offsite/q"
endpoint = "http://127.0.0.1:10"
object_lock = "compliance"
"#;
    let mut c = Config::from_toml(text, Path::new("test.toml")).unwrap();
    c.vault.secret_access_key = Some(Secret::new("s".repeat(20)));
    assert!(c.apply_env(env_of(&[("REWIND_VAULT_MIRRORS", "/mnt/usb/rewind, /srv/second,")])).is_empty());
    crate::add_mirror_locations(&mut c.vault.mirrors, ["/srv/third"]);
    let locations: Vec<&str> = c.vault.mirrors.iter().map(|m| m.location.as_str()).collect();
    assert_eq!(locations, ["/mnt/usb/rewind", "s3://offsite/q", "/srv/second", "/srv/third"], "named once each");
    let offsite = c.vault.mirrors[1].as_vault(&c.vault);
    assert_eq!(offsite.endpoint.as_deref(), Some("http://127.0.0.1:10"));
    assert_eq!(offsite.access_key_id.as_deref(), Some("VAULTKEY"), "the primary's credentials");
    assert_eq!(offsite.object_lock, crate::ObjectLock::Compliance);
    assert!(offsite.mirrors.is_empty());
    assert!(c.validate().is_empty(), "{:?}", c.validate());

    c.vault.mirrors.push(crate::MirrorConfig::at("s3://primary/p"));
    c.vault.mirrors.push(crate::MirrorConfig::at(""));
    let problems = c.validate();
    assert!(problems.iter().any(|p| p.message.contains("named twice")), "{problems:?}");
    assert!(problems.iter().any(|p| p.message.contains("needs a location")), "{problems:?}");
}
