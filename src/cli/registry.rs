//! Registry commands: `pull`, `push`, `login`, `logout`. Settings come
//! from `[registry]` in the config file; credentials from the auth file.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::Context;
use clap::Args;

use super::image::open_engine;
use super::Ctx;
use crate::engine::reference::Reference;
use crate::engine::EngineError;
use crate::registry::client::Client;
use crate::registry::credentials::{AuthFile, Credentials};
use crate::registry::progress::Progress;
use crate::registry::{normalize_registry, pull, push, Options, DOCKER_HUB};

/// `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to pick from a multi-platform image: os/arch[/variant] [default: this host's].
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image's full reference.
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST].
    pub image: String,
}

/// `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only NAME@DIGEST.
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG].
    pub image: String,
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// Registry (host[:port]) [default: docker.io].
    pub registry: Option<String>,
}

/// The registry options from the config file.
///
/// # Errors
/// An invalid `push_chunk_size`.
pub fn options(ctx: &Ctx) -> anyhow::Result<Options> {
    let c = &ctx.config.registry;
    let mut o = Options {
        insecure: c.insecure.clone(),
        ..Options::default()
    };
    if let Some(d) = &c.certs_dir {
        o.certs_dir = d.clone();
    }
    if let Some(n) = c.max_concurrent_downloads {
        o.max_concurrent_downloads = n.max(1);
    }
    if let Some(n) = c.retries {
        o.retries = n;
    }
    if let Some(ms) = c.retry_base_ms {
        o.retry_base = std::time::Duration::from_millis(ms);
    }
    if let Some(s) = c.timeout_secs {
        o.timeout = std::time::Duration::from_secs(s.max(1));
    }
    if let Some(s) = &c.push_chunk_size {
        let size = thinpool::parse_size(s).context("invalid [registry] push_chunk_size")?;
        o.push_chunk_size = Some(size.0.max(1));
    }
    Ok(o)
}

fn parse_ref(s: &str) -> anyhow::Result<Reference> {
    Reference::parse(s).map_err(|e| EngineError::Reference(e.to_string()).into())
}

/// Runs `pull`.
///
/// # Errors
/// Registry and store errors.
pub fn pull(a: PullArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let r = parse_ref(&a.image)?;
    let platform = a
        .platform
        .as_deref()
        .map(pull::parse_platform)
        .transpose()?;
    let opts = options(ctx)?;
    let mut engine = open_engine(ctx)?;
    let progress = Progress::new(a.quiet);
    let p = pull::pull(&mut engine, &r, platform.as_ref(), &opts, &progress)
        .with_context(|| format!("failed to pull {}", r.familiar()))?;
    let shown = if r.digest().is_some() {
        format!("{}@{}", r.name(), p.digest)
    } else {
        p.reference.clone()
    };
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(out, "Digest: {}", p.digest)?;
        let status = if p.changed {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        writeln!(out, "Status: {status} {}", shown)?;
    }
    writeln!(out, "{shown}")?;
    Ok(())
}

/// Runs `push`.
///
/// # Errors
/// Registry and store errors.
pub fn push(a: PushArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let r = parse_ref(&a.image)?;
    let opts = options(ctx)?;
    let mut engine = open_engine(ctx)?;
    let progress = Progress::new(a.quiet);
    let p = push::push(&mut engine, &r, &opts, &progress)
        .with_context(|| format!("failed to push {}", r.familiar()))?;
    if a.quiet {
        println!("{}@{}", p.name, p.digest);
    } else {
        println!("{}: digest: {} size: {}", p.tag, p.digest, p.size);
    }
    Ok(())
}

fn read_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// The password: stdin, the flag, or a prompt without echo on a terminal.
fn password(a: &LoginArgs) -> anyhow::Result<String> {
    if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("failed to read the password from stdin")?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Some(p) = &a.password {
        eprintln!(
            "WARNING! Using --password on the command line is insecure. Use --password-stdin."
        );
        return Ok(p.clone());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!("no password given: use --password-stdin (or run on a terminal to be asked)");
    }
    let fd = std::os::fd::AsFd::as_fd(&stdin);
    let saved = rustix::termios::tcgetattr(fd).context("failed to read terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &quiet)
        .context("failed to turn off echo")?;
    let line = read_line("Password: ");
    let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &saved);
    eprintln!();
    line
}

/// Runs `login`: checks the credentials against the registry, then stores them.
///
/// # Errors
/// [`RegistryError::Unauthorized`] when the registry refuses them.
pub fn login(a: LoginArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let registry = normalize_registry(a.registry.as_deref().unwrap_or(DOCKER_HUB))?;
    let opts = options(ctx)?;
    let file = AuthFile::new(&opts.auth_file);
    let creds = match (&a.username, file.get(&registry)?) {
        (None, Some(stored)) if !a.password_stdin && a.password.is_none() => stored,
        (user, _) => {
            let username = match user {
                Some(u) => u.clone(),
                None if std::io::stdin().is_terminal() => read_line("Username: ")?,
                None => anyhow::bail!("no user name given: use -u USER"),
            };
            Credentials {
                username,
                password: password(&a)?,
            }
        }
    };
    if creds.username.is_empty() || creds.password.is_empty() {
        anyhow::bail!("user name and password must not be empty");
    }
    let client = Client::new(&registry, &opts, Some(creds.clone()), Vec::new())?;
    client
        .ping()
        .with_context(|| format!("failed to log in to {registry}"))?;
    file.store(&registry, &creds)
        .with_context(|| format!("failed to store the credentials for {registry}"))?;
    println!("Login Succeeded");
    Ok(())
}

/// Runs `logout`.
///
/// # Errors
/// An unreadable or unwritable credentials file.
pub fn logout(registry: Option<&str>, ctx: &Ctx) -> anyhow::Result<()> {
    let registry = normalize_registry(registry.unwrap_or(DOCKER_HUB))?;
    let opts = options(ctx)?;
    if AuthFile::new(&opts.auth_file).remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}
