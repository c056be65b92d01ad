//! Writes a self-signed certificate for `localhost` and `127.0.0.1` (`cert.pem`, `key.pem`) into
//! the directory it is given: the TLS scenarios of the load benchmark (`bench/run.sh`).
//!
//! `cargo run --release -p warden-gateway --example bench_cert -- /tmp/bench-tls`

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: bench_cert DIR"))?,
    );
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("cert.pem"), generated.cert.pem())?;
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem())?;
    Ok(())
}
