//! A throwaway PKI for the TLS tests: a CA, server pairs it signs for
//! `localhost`/127.0.0.1 and other names, client pairs, written as PEM
//! files; and clients that trust the CA (reqwest with rustls, curl).

use std::path::PathBuf;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tempfile::TempDir;

pub struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key as files.
#[derive(Clone, Debug)]
pub struct PemPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-pki.")
            .tempdir()
            .expect("pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tollgate test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&ca_key).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        Pki { dir, ca, ca_key }
    }

    /// The CA certificate (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server pair for `names` (DNS names or IP addresses), signed by the CA.
    pub fn server(&self, file: &str, names: &[&str]) -> PemPair {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.signed(file, params)
    }

    /// A client pair with this common name, signed by the CA.
    pub fn client(&self, file: &str, common_name: &str) -> PemPair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.signed(file, params)
    }

    fn signed(&self, file: &str, params: CertificateParams) -> PemPair {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let pair = PemPair {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    /// A reqwest client (rustls) trusting this CA alone.
    pub fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).expect("ca pem"),
            )
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("https client")
    }
}

/// Runs curl with these arguments (`-s` and a 10 s limit added); returns
/// (exit code, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `openssl s_client` against `addr` with these arguments; returns
/// its stdout and stderr together.
pub fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
