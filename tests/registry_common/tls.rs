//! TLS material for the tests: [`make_ca`] makes a CA with rcgen and a
//! server certificate it signed for one IP address ([`TestCa`]).

/// A CA and a server certificate it signed for one IP address.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_ca(ip: &str) -> TestCa {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "thinsnap test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut lp = CertificateParams::new(vec![ip.to_string()]).unwrap();
    lp.distinguished_name.push(DnType::CommonName, ip);
    lp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = lp.signed_by(&key, &ca, &ca_key).unwrap();
    TestCa {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}
