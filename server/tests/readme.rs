//! The README's configuration example is the real format: parsed and
//! resolved by the server's own loader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use realtime_server::{parse_file, Cli, Settings};

#[test]
fn readme_toml_example_parses_and_resolves() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("README has a toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closed block");
    let file = parse_file(&readme[start..end]).expect("README TOML parses");
    let settings =
        Settings::resolve(&Cli::try_parse_from(["realtime-server"]).unwrap(), file).unwrap();
    assert_eq!(settings.apps.len(), 1);
    assert_eq!(settings.apps[0].key, "key1");
    assert_eq!(settings.apps[0].max_connections, Some(1000));
    assert_eq!(settings.activity_timeout, 120);
    let limits = settings.client_limits(&settings.apps[0]);
    assert_eq!(
        (limits.max_user_id_length, limits.max_member_size),
        (128, 2048)
    );
}
