//! A SoftHSM2 token of one test's own, initialised by the project's script
//! (`hack/softhsm.sh`), and OpenSC's `pkcs11-tool` as the independent PKCS#11 client that
//! checks what keyward left on it.

use std::process::Command;

use super::env::TestEnv;
use super::scratch::Scratch;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/softhsm.sh");

/// One test's token, removed with its directory when dropped.
pub struct SoftHsm {
    dir: Scratch,
}

/// One object as `pkcs11-tool --list-objects` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenObject {
    /// "Secret Key", "Private Key" or "Public Key".
    pub class: String,
    pub label: String,
    /// `CKA_ID`, lower-case hex.
    pub id: String,
    /// The "Access:" line: "sensitive, always sensitive, never extractable, local", ...
    pub access: String,
}

impl TokenObject {
    /// Sensitive and never extractable: what keeps a key inside the token.
    pub fn kept_in_token(&self) -> bool {
        let flags: Vec<&str> = self.access.split(", ").collect();
        flags.contains(&"sensitive")
            && flags.contains(&"never extractable")
            && !flags.contains(&"extractable")
    }
}

impl SoftHsm {
    /// A fresh token labelled `keyward`, with a random PIN.
    pub fn init(what: &str) -> SoftHsm {
        let dir = Scratch::new(&format!("softhsm-{what}"));
        let output = Command::new(SCRIPT)
            .arg("init")
            .arg(dir.dir())
            .output()
            .expect("run hack/softhsm.sh");
        assert!(
            output.status.success(),
            "hack/softhsm.sh init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SoftHsm { dir }
    }

    /// The environment keyward and pkcs11-tool need for this token.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SOFTHSM2_CONF", self.dir.path("softhsm2.conf")),
            ("KEYWARD_PKCS11_MODULE", MODULE.into()),
            ("KEYWARD_PKCS11_TOKEN_LABEL", "keyward".into()),
            ("KEYWARD_PKCS11_PIN_FILE", self.dir.path("pin")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect()
    }

    /// Makes every operator `env` starts from now on use this token.
    pub fn attach(&self, env: &mut TestEnv) {
        env.operator_env.extend(self.env());
    }

    /// The token's user PIN.
    pub fn pin(&self) -> String {
        std::fs::read_to_string(self.dir.path("pin"))
            .expect("the token's PIN")
            .trim()
            .to_string()
    }

    /// Runs pkcs11-tool logged in to this token; its output (stdout and stderr).
    pub fn pkcs11_tool(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", "keyward", "--login"])
            .args(["--pin", &self.pin()])
            .args(args)
            .env("SOFTHSM2_CONF", self.dir.path("softhsm2.conf"))
            .output()
            .expect("run pkcs11-tool (Debian package opensc)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Every object on the token, as pkcs11-tool lists them.
    pub fn objects(&self) -> Vec<TokenObject> {
        let (ok, text) = self.pkcs11_tool(&["--list-objects"]);
        assert!(ok, "pkcs11-tool --list-objects failed: {text}");
        parse_objects(&text)
    }

    /// The objects labelled for version `version` of key `key_id`.
    pub fn version_objects(&self, key_id: &str, version: &str) -> Vec<TokenObject> {
        let label = format!("keyward/{key_id}/{version}");
        self.objects()
            .into_iter()
            .filter(|o| o.label == label)
            .collect()
    }

    /// The objects of any version of key `key_id`.
    pub fn key_objects(&self, key_id: &str) -> Vec<TokenObject> {
        let prefix = format!("keyward/{key_id}/");
        self.objects()
            .into_iter()
            .filter(|o| o.label.starts_with(&prefix))
            .collect()
    }
}

/// pkcs11-tool's listing: a header line per object ("Private Key Object; EC"), then indented
/// "name: value" lines.
fn parse_objects(text: &str) -> Vec<TokenObject> {
    let mut objects: Vec<TokenObject> = Vec::new();
    for line in text.lines() {
        if let Some((class, _)) = line.split_once(" Object;") {
            objects.push(TokenObject {
                class: class.trim().to_string(),
                label: String::new(),
                id: String::new(),
                access: String::new(),
            });
            continue;
        }
        let (Some(object), Some((name, value))) = (objects.last_mut(), line.split_once(':')) else {
            continue;
        };
        let value = value.trim().to_string();
        match name.trim() {
            "label" => object.label = value,
            "ID" => object.id = value,
            "Access" => object.access = value,
            _ => {}
        }
    }
    objects
}
