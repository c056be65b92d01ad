//! `warden check` output on broken configurations, pinned byte for byte (`golden/*.expected`):
//! the configuration module's reshaping must not change what operators read. After an
//! intended change of a message, regenerate with `WARDEN_BLESS=1`.

use std::path::Path;
use std::process::Command;

#[test]
fn check_output_on_broken_configs_is_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden");
    let mut configs: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 8, "{configs:?}");
    let bless = std::env::var_os("WARDEN_BLESS").is_some();
    for config in configs {
        let name = config.file_name().expect("name").to_owned();
        let output = Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("check")
            .arg(&name)
            .current_dir(&dir)
            .env_remove("WARDEN_GOLDEN_UNSET")
            .env_remove("WARDEN_CONFIG")
            .output()
            .expect("run warden check");
        let got = format!(
            "{}exit {}\n",
            String::from_utf8_lossy(&output.stderr),
            output.status.code().unwrap_or(-1)
        );
        let expected_path = config.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).expect("expected output");
        assert_eq!(got, expected, "{}", config.display());
    }
}
