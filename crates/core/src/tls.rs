//! The root certificates the functions trust: Mozilla's, compiled into the binary
//! (`webpki-root-certs`), for the AWS SDK's client ([`crate::aws`]) and every HTTP client a
//! function builds ([`http_client_builder`]).
//!
//! The system's roots are read from disk, the bundle and every file of the certificate
//! directory: about 4 ms here, once per process in the AWS SDK's init and again each time a
//! `reqwest` client is built (`rustls-platform-verifier` loads them then). The compiled-in set takes no I/O and does not depend on where an image keeps its
//! bundle. AWS's endpoints, 4me's, Typeform's and Lansweeper's chain to roots in that set; a
//! newer set comes with a newer `webpki-root-certs`. Tools that run on a provider's machine
//! (`xtask`) keep the system's roots, which may hold a corporate proxy's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A `reqwest` client builder trusting the compiled-in roots only.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        // Only native-tls checks a certificate here; rustls parses them as the client is built.
        .filter_map(|cert| reqwest::Certificate::from_der(cert).ok());
    reqwest::Client::builder().tls_certs_only(roots)
}

/// The compiled-in roots as PEM, the form the AWS SDK's trust store takes, written straight
/// into one string with each certificate's base64 on one line (the SDK's reader takes any line
/// length): a third of the instructions of formatting 64-character lines, in every init.
pub(crate) fn roots_pem() -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----\n";
    const END: &str = "\n-----END CERTIFICATE-----\n";
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    let length = roots
        .iter()
        .map(|cert| BEGIN.len() + cert.len().div_ceil(3) * 4 + END.len())
        .sum();
    let mut pem = String::with_capacity(length);
    for cert in roots {
        pem.push_str(BEGIN);
        STANDARD.encode_string(cert, &mut pem);
        pem.push_str(END);
    }
    debug_assert_eq!(pem.len(), length);
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    /// Read back with the parser the SDK's trust store uses, the PEM holds every root.
    #[test]
    fn the_pem_holds_every_compiled_in_root() {
        let pem = roots_pem();
        let parsed: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the PEM parses");
        assert!(parsed.len() > 100, "{} roots", parsed.len());
        assert_eq!(parsed, webpki_root_certs::TLS_SERVER_ROOT_CERTS);
    }

    /// `reqwest` parses the roots as the client is built and fails the build on one it cannot.
    #[test]
    fn an_http_client_builds_on_the_compiled_in_roots() {
        http_client_builder().build().expect("the client builds");
    }
}
