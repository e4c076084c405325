//! The operator image: hack/image.sh (no engine, no registry) builds what the Dockerfile
//! describes, so the two cannot drift.
//!
//! hack/image.sh builds the binary with a cargo command and hands the Dockerfile's final stage
//! to hack/oci.py, which writes the image. These tests check the two joints: the cargo command
//! is the build stage's, word for word; and an image written from the Dockerfile (with a
//! stand-in binary) holds exactly the files the final stage copies, with its user, entrypoint,
//! command and ports. No cluster and no release build are needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `cargo build ...` up to the end of its line or a shell `&&`/`\`, whitespace normalised.
fn cargo_build_command(text: &str, file: &str) -> String {
    let found: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.find("cargo build").map(|i| &l[i..]))
        .map(|c| {
            let end = [c.find("&&"), c.find('\\'), c.find(">&")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(c.len());
            c[..end].split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{file}: expected one cargo build command, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// The final stage's instructions (continuations joined, comments dropped), first word upper.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (current.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        let ins = (word.to_uppercase(), rest.trim().to_string());
        if ins.0 == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(ins);
        }
        current.clear();
    }
    stages.pop().expect("the Dockerfile has a FROM")
}

fn oci(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("hack/oci.py"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("running hack/oci.py (python3)");
    assert!(
        out.status.success(),
        "hack/oci.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("keyward-image-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn image_sh_builds_the_binary_with_the_dockerfiles_command() {
    let dockerfile = cargo_build_command(&read("Dockerfile"), "Dockerfile");
    let script = cargo_build_command(&read("hack/image.sh"), "hack/image.sh");
    assert_eq!(
        script, dockerfile,
        "hack/image.sh and the Dockerfile build different binaries"
    );
}

#[test]
fn the_final_stage_is_from_scratch_so_its_copies_are_the_whole_file_set() {
    let stage = final_stage(&read("Dockerfile"));
    assert_eq!(stage[0], ("FROM".to_string(), "scratch".to_string()));
}

#[test]
fn an_image_written_from_the_dockerfile_holds_exactly_its_files_and_settings() {
    let dir = scratch_dir("files");
    let build = dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    // A stand-in for every file the final stage copies from the build stage.
    let stage = final_stage(&read("Dockerfile"));
    for (word, args) in &stage {
        if word == "COPY" && args.contains("--from=build") {
            let src = args
                .split_whitespace()
                .rev()
                .nth(1)
                .unwrap()
                .trim_start_matches('/');
            let path = build.join(src);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"stand-in").unwrap();
        }
    }
    let archive = dir.join("image.tar");
    let name = oci(&[
        "dockerfile",
        "Dockerfile",
        "--stage",
        &format!("build={}", build.display()),
        "--name",
        "keyward.local/keyward:test-{digest}",
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(
        name.trim().starts_with("keyward.local/keyward:test-"),
        "{name}"
    );

    let listed = oci(&["list", archive.to_str().unwrap()]);
    let declared = oci(&["files", "Dockerfile"]);
    assert_eq!(
        listed, declared,
        "the image's files differ from the Dockerfile's COPY lines"
    );
    assert!(
        listed.lines().any(|l| l == "/keyward"),
        "no /keyward in {listed}"
    );

    let config: Value = serde_json::from_str(&oci(&["config", archive.to_str().unwrap()])).unwrap();
    let config = &config["config"];
    for (word, args) in &stage {
        match word.as_str() {
            "USER" => assert_eq!(config["User"], args.as_str()),
            "ENTRYPOINT" => assert_eq!(
                config["Entrypoint"],
                serde_json::from_str::<Value>(args).unwrap()
            ),
            "CMD" => assert_eq!(config["Cmd"], serde_json::from_str::<Value>(args).unwrap()),
            "EXPOSE" => assert!(
                config["ExposedPorts"].get(format!("{args}/tcp")).is_some(),
                "{config}"
            ),
            _ => {}
        }
    }
    // The chart runs the image as the user the Dockerfile names.
    let values = read("charts/keyward/values.yaml");
    let user = config["User"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        values.contains(&format!("runAsUser: {user}")),
        "values.yaml runs as another user than {user}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oci_py_refuses_what_it_cannot_reproduce() {
    let dir = scratch_dir("refuse");
    for (case, dockerfile) in [
        ("a base image", "FROM debian:bookworm\nCOPY a /a\n"),
        ("a RUN in the final stage", "FROM scratch\nRUN echo\n"),
        (
            "a shell-form entrypoint",
            "FROM scratch\nENTRYPOINT /keyward run\n",
        ),
    ] {
        let path = dir.join("Dockerfile");
        std::fs::write(&path, dockerfile).unwrap();
        let out = Command::new("python3")
            .arg(Path::new(ROOT).join("hack/oci.py"))
            .args([
                "dockerfile",
                path.to_str().unwrap(),
                "--name",
                "x:y",
                "--out",
            ])
            .arg(dir.join("out.tar"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "hack/oci.py accepted {case}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
