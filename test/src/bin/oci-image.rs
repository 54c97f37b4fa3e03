//! `oci-image`: writes an OCI image-layout tar that `ctr images import` accepts, from files on
//! this machine, with no Docker and no registry. `make image` (the installer image) and
//! `make examples` (the examples' Wasm images) build their images with it.
//!
//! The output is deterministic (fixed mtimes, owners and order; see `warden_test::image`), so
//! the same inputs give the same manifest digest, which is printed and, with `--digest-file`,
//! written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use warden_test::image::{ImageBuilder, MEDIA_TYPE_WASM};

#[derive(Debug, Parser)]
#[command(
    about = "Write an OCI image-layout tar (for `ctr images import`) from local files",
    long_about = "Write an OCI image-layout tar (for `ctr images import`) from local files.\n\n\
        One uncompressed tar layer holds every --file and --dir (owner 0:0, fixed mtime); \
        --wasm-layer adds a module as a layer of its own (the OCI Wasm-layer form). The tar's \
        manifest digest is printed on stdout.",
    after_help = "Example:\n  oci-image --name docker.io/library/hello:0.1.0 --out hello.tar \\\n    \
        --file target/hello.wasm:/hello.wasm:0755 --entrypoint /hello.wasm --platform wasip1/wasm"
)]
struct Args {
    /// The image's name, as `ctr images import` records it (e.g. `docker.io/warden/x:0.1.0`).
    #[arg(long)]
    name: String,
    /// Where to write the tar.
    #[arg(long)]
    out: PathBuf,
    /// A file to add: HOST_PATH:IMAGE_PATH[:MODE], MODE in octal (default 0644).
    #[arg(long = "file", value_name = "HOST:IMAGE[:MODE]")]
    files: Vec<String>,
    /// A directory to add: IMAGE_PATH[:MODE], MODE in octal (default 0755).
    #[arg(long = "dir", value_name = "IMAGE[:MODE]")]
    dirs: Vec<String>,
    /// A module added as a layer of its own (no tar): HOST_PATH[:MEDIA_TYPE], media type
    /// `application/wasm` by default.
    #[arg(long = "wasm-layer", value_name = "HOST[:MEDIA_TYPE]")]
    wasm_layers: Vec<String>,
    /// One element of the config's Entrypoint (repeat for each argument).
    #[arg(long = "entrypoint", value_name = "ARG")]
    entrypoint: Vec<String>,
    /// One element of the config's Cmd (repeat for each argument).
    #[arg(long = "cmd", value_name = "ARG")]
    cmd: Vec<String>,
    /// KEY=VALUE in the config's Env.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// KEY=VALUE in the config's Labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The config's WorkingDir.
    #[arg(long)]
    workdir: Option<String>,
    /// OS/ARCH of the image: linux/amd64 (default), wasip1/wasm, wasip2/wasm.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Also write the manifest digest (`sha256:...`) to this file.
    #[arg(long, value_name = "PATH")]
    digest_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oci-image: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// An in-image path: absolute or relative to the image root, without `..`.
fn image_path(path: &str) -> Result<&str> {
    if path.split('/').any(|part| part == "..") {
        bail!("image paths may not hold `..`: {path:?}");
    }
    if path.split('/').all(|part| part.is_empty() || part == ".") {
        bail!("an image path names no file: {path:?}");
    }
    Ok(path)
}

fn octal_mode(text: &str) -> Result<u32> {
    let mode =
        u32::from_str_radix(text, 8).with_context(|| format!("mode {text:?} is not octal"))?;
    if mode > 0o7777 {
        bail!("mode {text:?} is more than 07777");
    }
    Ok(mode)
}

fn key_value(text: &str, what: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => bail!("{what} {text:?} is not KEY=VALUE"),
    }
}

fn run(args: Args) -> Result<()> {
    let Some((os, arch)) = args.platform.split_once('/') else {
        bail!("--platform {:?} is not OS/ARCH", args.platform);
    };
    let mut image = ImageBuilder::new(&args.name).platform(os, arch);
    for dir in &args.dirs {
        let (path, mode) = match dir.split_once(':') {
            Some((path, mode)) => (path, octal_mode(mode)?),
            None => (dir.as_str(), 0o755),
        };
        image = image.dir_with_mode(image_path(path)?, mode);
    }
    for file in &args.files {
        let mut parts = file.splitn(3, ':');
        let (Some(host), Some(path)) = (parts.next(), parts.next()) else {
            bail!("--file {file:?} is not HOST_PATH:IMAGE_PATH[:MODE]");
        };
        let mode = parts.next().map(octal_mode).transpose()?.unwrap_or(0o644);
        let bytes = std::fs::read(host).with_context(|| format!("reading {host}"))?;
        image = image.file(image_path(path)?, bytes, mode);
    }
    for layer in &args.wasm_layers {
        let (host, media_type) = layer.split_once(':').unwrap_or((layer, MEDIA_TYPE_WASM));
        let bytes = std::fs::read(host).with_context(|| format!("reading {host}"))?;
        image = image.wasm_layer(bytes, media_type);
    }
    if args.files.is_empty() && args.dirs.is_empty() && args.wasm_layers.is_empty() {
        bail!("the image would hold nothing: give --file, --dir or --wasm-layer");
    }
    if !args.entrypoint.is_empty() {
        image = image.entrypoint(args.entrypoint);
    }
    if !args.cmd.is_empty() {
        image = image.cmd(args.cmd);
    }
    for env in &args.env {
        let (key, value) = key_value(env, "--env")?;
        image = image.env(&key, &value);
    }
    for label in &args.labels {
        let (key, value) = key_value(label, "--label")?;
        image = image.label(&key, &value);
    }
    if let Some(dir) = &args.workdir {
        image = image.working_dir(dir);
    }
    let info = image
        .write_tar(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(path) = &args.digest_file {
        std::fs::write(path, format!("{}\n", info.manifest_digest))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{} {}", info.name, info.manifest_digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_modes_and_pairs_are_checked() {
        assert!(image_path("/usr/local/bin/warden").is_ok());
        assert!(image_path("../etc/passwd").is_err());
        assert!(image_path("/").is_err());
        assert_eq!(octal_mode("0755").ok(), Some(0o755));
        assert!(octal_mode("0999").is_err());
        assert!(octal_mode("17777").is_err());
        assert_eq!(
            key_value("a=b=c", "--env").ok(),
            Some(("a".to_string(), "b=c".to_string()))
        );
        assert!(key_value("=x", "--label").is_err());
        assert!(key_value("novalue", "--label").is_err());
    }
}
