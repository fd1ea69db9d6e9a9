//! `portcullis healthcheck`: asks the server on the configured address for `/healthz`, over
//! TLS when the server terminates TLS itself (container probes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Exit status 0 (Ok) when `/healthz` answers 200.
pub fn run(settings: &Settings) -> Result<(), String> {
    let address = settings.bind.replace("0.0.0.0", "127.0.0.1");
    let stream = TcpStream::connect_timeout(
        &address
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&address)
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(())
            })
            .map_err(|()| format!("setting `bind`: {address} is not an address"))?,
        TIMEOUT,
    )
    .map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let reply = match &settings.tls_cert {
        Some(cert) => over_tls(stream, cert, &request)?,
        None => exchange(stream, &request)?,
    };
    if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!("{address}/healthz did not answer 200"))
    }
}

fn exchange(mut stream: impl Read + Write, request: &str) -> Result<String, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    // A reset after the answer (Connection: close) is not a failure.
    let _ = stream.read_to_end(&mut reply);
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// TLS to our own listener: the certificate must be exactly the one in `tls_cert` (the probe
/// runs beside the server, by an address the certificate need not name).
fn over_tls(stream: TcpStream, cert: &std::path::Path, request: &str) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    let expected = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("setting `tls_cert`: {}: {e}", cert.display()))?
        .next()
        .ok_or_else(|| format!("setting `tls_cert`: no certificate in {}", cert.display()))?
        .map_err(|e| format!("setting `tls_cert`: {e}"))?
        .into_owned();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { expected, provider }))
        .with_no_client_auth();
    let name = ServerName::try_from("portcullis.healthcheck").map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS: {e}"))?;
    exchange(rustls::StreamOwned::new(connection, stream), request)
}

/// Accepts exactly one certificate, and checks the handshake is signed by its key.
#[derive(Debug)]
struct Pinned {
    expected: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in `tls_cert`".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
