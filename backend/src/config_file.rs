//! The configuration file: `--config FILE` (or `KOKUSHI_CONFIG`) names a TOML file whose keys
//! are the `KOKUSHI_*` variables without the prefix, in lower case (`bind`, `database_url`,
//! `redis_url`, `model_store`, `max_queued_per_user`, …). A value from the file replaces the
//! built-in default of every command that has that setting; an environment variable beats the
//! file, and a flag beats both. An unknown key or a value of the wrong kind is an error that
//! names the file and the key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The config file named by `--config FILE`/`--config=FILE` in `args`, or by `KOKUSHI_CONFIG`.
pub fn path_from(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("KOKUSHI_CONFIG").map(PathBuf::from)
}

/// Every `KOKUSHI_*` variable some command of `command` reads.
fn known_variables(command: &clap::Command, into: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            into.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in command.get_subcommands() {
        known_variables(sub, into);
    }
}

fn set_default(command: clap::Command, env: &str, value: &'static str) -> clap::Command {
    let ids: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| a.get_env().is_some_and(|e| e == env))
        .map(|a| a.get_id().clone())
        .collect();
    let mut command = command;
    for id in ids {
        command = command.mut_arg(id, |a| a.default_value(value));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| set_default(sub, env, value));
    }
    command
}

/// `command` with the defaults of the config file at `path`.
pub fn apply(command: clap::Command, path: &Path) -> Result<clap::Command, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
    let mut known = BTreeSet::new();
    known_variables(&command, &mut known);
    known.remove("KOKUSHI_CONFIG");
    let mut command = command;
    for (key, value) in table {
        let env = format!("KOKUSHI_{}", key.to_uppercase());
        if !known.contains(&env) || key != key.to_lowercase() {
            let keys: Vec<String> = known
                .iter()
                .map(|k| k.trim_start_matches("KOKUSHI_").to_lowercase())
                .collect();
            return Err(format!(
                "{}: unknown key `{key}`; known keys: {}",
                path.display(),
                keys.join(", ")
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{}: key `{key}` must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ));
            }
        };
        // Settings live as long as the process.
        command = set_default(command, &env, Box::leak(text.into_boxed_str()));
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::{Cli, Command};

    fn serve_args(file: &str, args: &[&str]) -> Result<crate::commands::serve::ServeArgs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("kokushi.toml");
        std::fs::write(&path, file).map_err(|e| e.to_string())?;
        let command = apply(Cli::command(), &path)?;
        let matches = command
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        match Cli::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(serve) => Ok(serve),
            _ => Err("not serve".to_owned()),
        }
    }

    #[test]
    fn the_file_replaces_defaults_and_flags_replace_the_file() {
        let file = "bind = \"0.0.0.0:9000\"\nmax_queued_per_user = 7\nsecure_cookies = true\n";
        let serve = serve_args(file, &["kokushi", "serve"]).expect("parses");
        assert_eq!(serve.bind, "0.0.0.0:9000");
        assert_eq!(serve.max_queued_per_user, 7);
        assert!(serve.secure_cookies);
        let serve =
            serve_args(file, &["kokushi", "serve", "--bind", "127.0.0.1:1"]).expect("parses");
        assert_eq!(serve.bind, "127.0.0.1:1");
        assert_eq!(serve.max_queued_per_user, 7);
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_name_the_file_and_the_key() {
        let err = serve_args("bnd = \"x\"\n", &["kokushi", "serve"])
            .err()
            .expect("unknown");
        assert!(
            err.contains("kokushi.toml") && err.contains("`bnd`") && err.contains("bind"),
            "{err}"
        );
        let err = serve_args("bind = [1, 2]\n", &["kokushi", "serve"])
            .err()
            .expect("array");
        assert!(err.contains("`bind`") && err.contains("array"), "{err}");
        let err = serve_args("bind = \n", &["kokushi", "serve"])
            .err()
            .expect("bad toml");
        assert!(err.contains("not valid TOML"), "{err}");
        let err = serve_args("max_queued_per_user = \"many\"\n", &["kokushi", "serve"])
            .err()
            .expect("not a number");
        assert!(err.contains("many"), "{err}");
    }

    #[test]
    fn the_config_flag_is_found_before_parsing() {
        let args: Vec<std::ffi::OsString> = ["kokushi", "serve", "--config", "a.toml"]
            .map(Into::into)
            .to_vec();
        assert_eq!(path_from(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<std::ffi::OsString> = ["kokushi", "--config=b.toml", "serve"]
            .map(Into::into)
            .to_vec();
        assert_eq!(path_from(&args), Some(PathBuf::from("b.toml")));
    }
}
