//! What a case of the corpus is: a manifest (JSON, or raw bytes), the one outcome it may have,
//! and the outcome observed; and the [`Corpus`] that names the cases as they are added.

use serde_json::{Value, json};

use keyward::kms::error::Code;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Key,
    KeyVersion,
}

impl Kind {
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Key => "keys",
            Kind::KeyVersion => "keyversions",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// 4xx from the API server; the object does not exist.
    Refused,
    /// A Key with Ready=False, the message starting with a KMS code and naming this field.
    Rejected(&'static str),
    /// A KeyVersion with Ready=False and this reason (`Rejected...` or `WaitingForKey`).
    VersionRejected(&'static str),
    /// Valid after all.
    Ready,
}

pub enum Body {
    Json(Value),
    /// Bytes sent as they are, with this content type.
    Raw(Vec<u8>, &'static str),
}

pub struct Case {
    pub group: &'static str,
    pub what: String,
    pub kind: Kind,
    /// `metadata.name` as sent, when it is a string.
    pub name: Option<String>,
    pub body: Body,
    pub expect: Expect,
}

/// What happened to a case.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Refused(u16, String),
    /// The API server answered something other than 2xx or 4xx (or nothing).
    ServerError(String),
    /// Created; no Ready condition for the current generation yet.
    Pending,
    Ready(String),
    NotReady {
        reason: String,
        message: String,
    },
    /// Created, and gone by the end.
    Vanished,
}

impl Outcome {
    pub fn column(&self) -> &'static str {
        match self {
            Outcome::Refused(..) => "refused (4xx)",
            Outcome::ServerError(_) => "server error",
            Outcome::Pending => "no condition",
            Outcome::Ready(_) => "Ready",
            Outcome::NotReady { reason, .. } if reason == "WaitingForKey" => "WaitingForKey",
            Outcome::NotReady { .. } => "Ready=False",
            Outcome::Vanished => "vanished",
        }
    }
}

/// Whether `outcome` is the one `expect` allows.
pub fn satisfies(kind: Kind, expect: &Expect, outcome: &Outcome) -> bool {
    let starts_with_code = |message: &str| {
        Code::ALL
            .iter()
            .any(|code| message.starts_with(&format!("{}: ", code.as_str())))
    };
    match (expect, outcome) {
        (Expect::Refused, Outcome::Refused(code, _)) => (400..500).contains(code),
        (Expect::Ready, Outcome::Ready(reason)) => match kind {
            Kind::Key => reason == "KeyReady",
            Kind::KeyVersion => reason == "Created",
        },
        (Expect::Rejected(field), Outcome::NotReady { reason, message }) => {
            kind == Kind::Key
                && starts_with_code(message)
                && Code::ALL.iter().any(|c| c.reason() == reason)
                && message.contains(field)
        }
        (Expect::VersionRejected(want), Outcome::NotReady { reason, message }) => {
            kind == Kind::KeyVersion
                && reason == want
                && (reason == "WaitingForKey"
                    || (reason.starts_with("Rejected") && starts_with_code(message)))
        }
        _ => false,
    }
}

/// Names: k-000, k-001, ... and kv-000, ...
pub struct Corpus {
    pub cases: Vec<Case>,
    pub keys: usize,
    pub versions: usize,
}

impl Corpus {
    fn next_name(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Key => {
                self.keys += 1;
                format!("k-{:03}", self.keys)
            }
            Kind::KeyVersion => {
                self.versions += 1;
                format!("kv-{:03}", self.versions)
            }
        }
    }

    /// A Key with this spec (any JSON), under a fresh name.
    pub fn key(
        &mut self,
        group: &'static str,
        what: impl Into<String>,
        spec: Value,
        expect: Expect,
    ) {
        let name = self.next_name(Kind::Key);
        let body = manifest(Kind::Key, &name, spec);
        self.push(group, what, Kind::Key, Some(name), Body::Json(body), expect);
    }

    /// A KeyVersion with this spec (any JSON), under a fresh name.
    pub fn version(
        &mut self,
        group: &'static str,
        what: impl Into<String>,
        spec: Value,
        expect: Expect,
    ) {
        let name = self.next_name(Kind::KeyVersion);
        let body = manifest(Kind::KeyVersion, &name, spec);
        self.push(
            group,
            what,
            Kind::KeyVersion,
            Some(name),
            Body::Json(body),
            expect,
        );
    }

    pub fn push(
        &mut self,
        group: &'static str,
        what: impl Into<String>,
        kind: Kind,
        name: Option<String>,
        body: Body,
        expect: Expect,
    ) {
        self.cases.push(Case {
            group,
            what: what.into(),
            kind,
            name,
            body,
            expect,
        });
    }
}

pub fn manifest(kind: Kind, name: &str, spec: Value) -> Value {
    let kind = match kind {
        Kind::Key => "Key",
        Kind::KeyVersion => "KeyVersion",
    };
    json!({"apiVersion": "keyward.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// Valid Keys the KeyVersion cases refer to, created (and settled) before the corpus.
pub const TARGET_AES: &str = "target-aes";
pub const TARGET_EC: &str = "target-ec";
/// A Key that exists but is invalid (no store).
pub const TARGET_INVALID: &str = "target-invalid";

pub fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!(
            "{}... ({} chars)",
            text.chars().take(12).collect::<String>(),
            text.chars().count()
        )
    } else {
        text.to_string()
    }
}
