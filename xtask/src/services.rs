//! Redis and PostgreSQL servers for the tests (and the demo's --redis), started on free
//! loopback ports in throw-away folders and stopped when [`Services`] is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{run_cmd, step};

#[derive(Default)]
pub struct Services {
    redis: Option<Child>,
    postgres: Option<(PathBuf, PathBuf)>,
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Services {
    /// Starts a private redis-server; returns its URL.
    pub fn start_redis(&mut self) -> Result<String> {
        step("starting Redis");
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(format!("redis://127.0.0.1:{port}/"))
    }

    /// Starts a private PostgreSQL cluster (trust auth on loopback); returns its admin URL.
    pub fn start_postgres(&mut self) -> Result<String> {
        step("starting PostgreSQL");
        let bin = postgres_bin()?;
        let port = free_port()?;
        let data = std::env::temp_dir().join(format!("kokushi-test-pg-{port}"));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let pg = |tool: &str| pg_tool(&bin, tool);
        if is_root() {
            run_cmd(Command::new("chown").arg("postgres:postgres").arg(&data))?;
        }
        run_cmd(
            pg("initdb")
                .args([
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data)
                .stdout(Stdio::null()),
        )?;
        let log = data.join("server.log");
        run_cmd(
            pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
                    data.display()
                ))
                .arg("start")
                .stdout(Stdio::null()),
        )?;
        self.postgres = Some((bin, data));
        Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
    }
}

/// A PostgreSQL server tool, run as the `postgres` user when we are root (the server refuses
/// to run as root), from the temporary folder so that it can read its working directory.
fn pg_tool(bin: &Path, tool: &str) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    cmd.current_dir(std::env::temp_dir());
    cmd
}

fn postgres_bin() -> Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .with_context(|| format!("{} is missing (apt-get install postgresql)", base.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((bin, data)) = self.postgres.take() {
            let _ = pg_tool(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "stop"])
                .stdout(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&data);
        }
    }
}
