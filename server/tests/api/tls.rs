//! HTTPS with rustls from PEM files (`tls_cert`, `tls_key`).

use std::process::Command;

use crate::helpers::{spawn_app_with, Db};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// A small CA and a leaf certificate for 127.0.0.1 (rustls clients reject a self-signed CA
/// used as an end-entity certificate).
pub fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Portcullis test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (cert, key) = (dir.path().join("leaf.pem"), dir.path().join("leaf.key"));
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.tls_cert = Some(cert.clone());
        s.tls_key = Some(key.clone());
        s.issuer = s.issuer.replace("http://", "https://");
    })
    .await
    .unwrap();
    let https = app.address.replace("http://", "https://");
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let health = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let discovery: serde_json::Value = client
        .get(format!("{https}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["token_endpoint"],
        format!("{https}/token").as_str()
    );
    // HSTS on an https issuer, and a session cookie only this host can set and read.
    let login = client.get(format!("{https}/login")).send().await.unwrap();
    assert!(login.headers().contains_key("strict-transport-security"));
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(
        session.contains("Secure") && session.contains("Path=/") && !session.contains("Domain")
    );
    // Plain HTTP to the TLS port does not get an answer as if it were HTTPS.
    assert!(app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .is_err());
    // `portcullis healthcheck` speaks TLS to a TLS listener (container probes).
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let healthcheck = |cert_path: &std::path::Path| {
        let (cert_path, key, port) = (cert_path.to_path_buf(), key.clone(), port.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("healthcheck")
                .env("PORTCULLIS_BIND", format!("0.0.0.0:{port}"))
                .env("PORTCULLIS_TLS_CERT", cert_path)
                .env("PORTCULLIS_TLS_KEY", key)
                .output()
                .unwrap()
        })
    };
    let probe = healthcheck(&cert).await.unwrap();
    assert!(
        probe.status.success(),
        "healthcheck over TLS: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // It trusts exactly the configured certificate: another one (the CA's) does not pass.
    let probe = healthcheck(&dir.path().join("ca.pem")).await.unwrap();
    assert!(
        !probe.status.success(),
        "a different certificate was accepted"
    );
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve"])
        .env("PORTCULLIS_TLS_CERT", "/nonexistent/cert.pem")
        .env("PORTCULLIS_DATABASE_URL", "/nonexistent/x.db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tls_cert") && stderr.contains("tls_key"),
        "{stderr}"
    );
}
