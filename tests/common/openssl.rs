//! The one way the tests run the OpenSSL 3 CLI (an implementation independent of keyward's):
//! on files in a [`Scratch`] directory, or on bytes piped through it. It runs with umask 077,
//! so that what it writes (keys, plaintexts) is private too.
//!
//! A failure panics with what was being done and OpenSSL's output, never with the arguments
//! (they may hold a hex key). No caller has OpenSSL print key material: material and
//! ciphertexts go through files, and keys are only printed as their public halves (`-pubout`,
//! `-text_pub`) or not at all (`-noout`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::scratch::Scratch;

/// Runs `openssl` with `args` (in `dir`, if given) and `input` on its stdin.
fn run(dir: Option<&Path>, args: &[&str], input: &[u8]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 077 && exec openssl \"$@\"")
        .arg("openssl")
        .args(args)
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("run the openssl CLI");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write to openssl");
    }
    child.wait_with_output().expect("run the openssl CLI")
}

/// The stdout of a run that succeeded; panics with `what` and OpenSSL's output otherwise.
fn succeeded(what: &str, output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "openssl failed to {what} ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs `openssl` in `dir` and returns its stdout; `what` names the operation in a failure.
pub fn openssl_ok(dir: &Scratch, what: &str, args: &[&str]) -> Vec<u8> {
    succeeded(what, run(Some(dir.dir()), args, &[]))
}

/// [`openssl_ok`], its stdout as text.
pub fn openssl_text(dir: &Scratch, what: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&openssl_ok(dir, what, args)).into_owned()
}

/// Asserts that OpenSSL refuses the operation (e.g. verifying a tampered message).
pub fn openssl_fails(dir: &Scratch, what: &str, args: &[&str]) {
    let output = run(Some(dir.dir()), args, &[]);
    assert!(
        !output.status.success(),
        "openssl should have refused to {what}, but it succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Runs `openssl` with `input` on stdin (a command that reads and writes no files), returning
/// its stdout.
pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let what = format!("run `openssl {}`", args.first().unwrap_or(&""));
    succeeded(&what, run(None, args, input))
}
