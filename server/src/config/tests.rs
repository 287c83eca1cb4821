use clap::Parser;

use super::*;

#[test]
fn no_configuration_runs_the_dev_app_on_loopback() {
    let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
    assert!(s.dev_app);
    assert_eq!(s.bind, DEFAULT_BIND);
    assert_eq!(DEFAULT_BIND.to_string(), "127.0.0.1:6001");
    assert_eq!(s.apps, vec![AppConfig::dev()]);
    assert_eq!(s.activity_timeout, 120);
    assert_eq!(s.redis, None);
    assert_eq!(s.node_ttl, DEFAULT_NODE_TTL);
}

#[test]
fn redis_comes_from_the_flag_or_the_file() {
    let file = parse_file("redis = \"redis://file:6379/\"\nnode_ttl = 5\n").unwrap();
    let s = Settings::resolve(&Cli::default(), file.clone()).unwrap();
    assert_eq!(s.redis.as_deref(), Some("redis://file:6379/"));
    assert_eq!(s.node_ttl, 5);
    let cli = Cli::try_parse_from(["x", "--redis", "redis://flag:1/"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!(s.redis.as_deref(), Some("redis://flag:1/"));
    let cli = Cli::try_parse_from(["x", "--redis", "localhost:6379"]).unwrap();
    assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
}

#[test]
fn flags_beat_the_file_and_apps_add_up() {
    let file = parse_file(
        r#"
        bind = "0.0.0.0:7000"
        activity_timeout = 30
        slow_consumer = "disconnect"
        [[apps]]
        id = "1"
        key = "k1"
        secret = "s1"
        max_connections = 5
        client_messages = false
        "#,
    )
    .unwrap();
    let cli = Cli::try_parse_from([
        "x",
        "--bind",
        "127.0.0.1:1",
        "--app-id",
        "2",
        "--app-key",
        "k2",
        "--app-secret",
        "s2",
    ])
    .unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!(s.bind.port(), 1);
    assert_eq!(s.activity_timeout, 30);
    assert_eq!(s.slow_consumer, SlowConsumer::Disconnect);
    assert_eq!(s.apps.len(), 2);
    assert_eq!(s.apps[0].max_connections, Some(5));
    assert!(!s.apps[0].client_messages);
    assert_eq!(s.apps[1].max_event_size, DEFAULT_MAX_EVENT_SIZE);
    assert!(!s.dev_app);
}

#[test]
fn member_limits_default_to_pusher_and_apps_override_the_flags() {
    let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
    let l = s.client_limits(&s.apps[0]);
    assert_eq!((l.max_user_id_length, l.max_member_size), (128, 2048));
    let file = parse_file(
        "max_member_size = 4096\n[[apps]]\nid='1'\nkey='k'\nsecret='s'\nmax_user_id_length = 16\n\
         [[apps]]\nid='2'\nkey='k2'\nsecret='s'\nmax_member_size = 100\n",
    )
    .unwrap();
    let cli = Cli::try_parse_from(["x", "--max-user-id-length", "64"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    let (a, b) = (s.client_limits(&s.apps[0]), s.client_limits(&s.apps[1]));
    assert_eq!((a.max_user_id_length, a.max_member_size), (16, 4096));
    assert_eq!((b.max_user_id_length, b.max_member_size), (64, 100));
    let cli = Cli::try_parse_from(["x", "--max-member-size", "0"]).unwrap();
    assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
}

#[test]
fn the_development_app_id_is_numeric_as_pusher_sdks_require() {
    assert!(DEV_APP_ID.bytes().all(|b| b.is_ascii_digit()));
    assert!(!DEV_APP_ID.is_empty());
}

#[test]
fn inconsistent_configurations_are_refused() {
    let cli = Cli::try_parse_from(["x", "--app-key", "k"]).unwrap();
    assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
    let file = parse_file(
        "[[apps]]\nid='1'\nkey='k'\nsecret='s'\n[[apps]]\nid='2'\nkey='k'\nsecret='t'\n",
    )
    .unwrap();
    assert!(Settings::resolve(&Cli::default(), file).is_err());
    let file = parse_file("[[apps]]\nid='a/b'\nkey='k'\nsecret='s'\n").unwrap();
    assert!(Settings::resolve(&Cli::default(), file).is_err());
    assert!(parse_file("nonsense = 1").is_err());
    let cli =
        Cli::try_parse_from(["x", "--slow-consumer", "disconnect", "--workers", "0"]).unwrap();
    assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
}

#[test]
fn cache_settings_come_from_flags_or_the_file_with_pusher_defaults() {
    let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
    assert_eq!((s.cache_ttl, s.max_cache_channels), (1800, 10_000));
    let file = parse_file("cache_ttl = 60\nmax_cache_channels = 5\n").unwrap();
    let s = Settings::resolve(&Cli::default(), file.clone()).unwrap();
    assert_eq!((s.cache_ttl, s.max_cache_channels), (60, 5));
    let cli = Cli::try_parse_from(["x", "--cache-ttl", "7"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!((s.cache_ttl, s.max_cache_channels), (7, 5));
    let cli = Cli::try_parse_from(["x", "--max-cache-channels", "0"]).unwrap();
    assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
}

#[test]
fn webhook_targets_come_from_the_file_and_the_flag_and_are_validated() {
    let file = parse_file(
        r#"
        webhook_retry_ms = 500
        [[apps]]
        id = "1"
        key = "k1"
        secret = "s1"
        [[apps.webhooks]]
        url = "http://127.0.0.1:9000/hooks"
        event_types = ["channel_occupied", "channel_vacated"]
        filter = { channel_name_starts_with = "presence-" }
        [[apps.webhooks]]
        url = "http://127.0.0.1:9001/all"
        "#,
    )
    .unwrap();
    let s = Settings::resolve(&Cli::default(), file.clone()).unwrap();
    assert_eq!(s.webhook_retry_ms, 500);
    assert_eq!(s.webhook_queue, DEFAULT_WEBHOOK_QUEUE);
    assert_eq!(s.webhook_timeout_ms, DEFAULT_WEBHOOK_TIMEOUT_MS);
    let hooks = &s.apps[0].webhooks;
    assert_eq!(hooks.len(), 2);
    assert!(hooks[0].wants("channel_occupied", "presence-x"));
    assert!(!hooks[0].wants("channel_occupied", "public"));
    assert!(!hooks[0].wants("member_added", "presence-x"));
    assert!(hooks[1].wants("cache_miss", "cache-x"));

    // The flag goes to the single app (here the development app).
    let cli = Cli::try_parse_from(["x", "--webhook-url", "http://h:1/w"]).unwrap();
    let s = Settings::resolve(&cli, FileConfig::default()).unwrap();
    assert_eq!(s.apps[0].webhooks, vec![WebhookTarget::new("http://h:1/w")]);
    // ... or to the --app-* one beside the file's.
    let cli = Cli::try_parse_from([
        "x",
        "--app-id",
        "2",
        "--app-key",
        "k2",
        "--app-secret",
        "s2",
        "--webhook-url",
        "http://h:1/w",
    ])
    .unwrap();
    let s = Settings::resolve(&cli, file.clone()).unwrap();
    assert_eq!(s.apps[1].webhooks.len(), 1);
    assert_eq!(s.apps[0].webhooks.len(), 2);

    // Refused: TLS, unknown event types, zero limits, an ambiguous flag.
    for bad in [
        "[[apps]]\nid=\"1\"\nkey=\"k\"\nsecret=\"s\"\n[[apps.webhooks]]\nurl=\"https://h/\"\n",
        "[[apps]]\nid=\"1\"\nkey=\"k\"\nsecret=\"s\"\n[[apps.webhooks]]\nurl=\"http://h/\"\nevent_types=[\"nope\"]\n",
        "webhook_queue = 0\n",
        "webhook_timeout_ms = 0\n",
    ] {
        let file = parse_file(bad).unwrap();
        assert!(Settings::resolve(&Cli::default(), file).is_err(), "{bad}");
    }
    let two = parse_file(
        "[[apps]]\nid=\"1\"\nkey=\"k\"\nsecret=\"s\"\n[[apps]]\nid=\"2\"\nkey=\"k2\"\nsecret=\"s\"\n",
    )
    .unwrap();
    let cli = Cli::try_parse_from(["x", "--webhook-url", "http://h:1/w"]).unwrap();
    assert!(Settings::resolve(&cli, two).is_err());
}

#[test]
fn tls_needs_both_files_from_the_flags_or_the_file() {
    let cli = Cli::try_parse_from(["x", "--tls-cert", "c.pem"]).unwrap();
    let err = Settings::resolve(&cli, FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("--tls-key"), "{err}");
    let file = parse_file("tls_cert = \"f.pem\"\ntls_key = \"k.pem\"\n").unwrap();
    let cli = Cli::try_parse_from(["x", "--tls-cert", "c.pem"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!(s.tls, Some(("c.pem".into(), "k.pem".into())));
    let none = Settings::resolve(&Cli::try_parse_from(["x"]).unwrap(), FileConfig::default());
    assert_eq!(none.unwrap().tls, None);
}

#[test]
fn compression_is_on_by_default_and_set_by_flag_or_file() {
    let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
    assert_eq!(s.compression, Compression::On);
    assert_eq!(s.compression_threshold, 256);
    let file = parse_file("compression = \"off\"\ncompression_threshold = 1024\n").unwrap();
    let s = Settings::resolve(&Cli::default(), file.clone()).unwrap();
    assert_eq!(
        (s.compression, s.compression_threshold),
        (Compression::Off, 1024)
    );
    let config = crate::server::transport_config(&s);
    assert!(!config.compression);
    assert_eq!(config.compression_threshold, 1024);
    let cli =
        Cli::try_parse_from(["x", "--compression", "on", "--compression-threshold", "0"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!(
        (s.compression, s.compression_threshold),
        (Compression::On, 0)
    );
    assert!(Cli::try_parse_from(["x", "--compression", "maybe"]).is_err());
    assert!(parse_file("compression = \"yes\"\n").is_err());
}
