//! The model store: the one folder models are read from. Jobs name a file inside it; a name
//! that would reach outside (a path, `..`, a link pointing elsewhere) is refused.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error("model name {0:?} is not a plain file name inside the model store")]
    NotAName(String),
    #[error("model {name:?} is not in the model store {store}")]
    Missing { name: String, store: PathBuf },
    #[error("model {name:?} resolves outside the model store {store}")]
    Escapes { name: String, store: PathBuf },
}

/// The path of model `name` inside `store`, after checking it stays inside.
pub fn resolve_model(store: &Path, name: &str) -> Result<PathBuf, ModelStoreError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1;
    if !plain {
        return Err(ModelStoreError::NotAName(name.to_owned()));
    }
    let missing = || ModelStoreError::Missing {
        name: name.to_owned(),
        store: store.to_owned(),
    };
    let store_real = store.canonicalize().map_err(|_| missing())?;
    let real = store.join(name).canonicalize().map_err(|_| missing())?;
    if !real.starts_with(&store_real) {
        return Err(ModelStoreError::Escapes {
            name: name.to_owned(),
            store: store.to_owned(),
        });
    }
    if !real.is_file() {
        return Err(missing());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_inside_the_store_resolve() {
        let store = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(store.path().join("m.gguf"), b"x").expect("write");
        std::fs::write(outside.path().join("secret.gguf"), b"x").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.gguf"),
            store.path().join("link.gguf"),
        )
        .expect("symlink");

        assert!(resolve_model(store.path(), "m.gguf").is_ok());
        for bad in ["../m.gguf", "/etc/passwd", "", ".hidden", "a/b.gguf"] {
            assert!(
                matches!(
                    resolve_model(store.path(), bad),
                    Err(ModelStoreError::NotAName(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve_model(store.path(), "absent.gguf"),
            Err(ModelStoreError::Missing { .. })
        ));
        #[cfg(unix)]
        assert!(matches!(
            resolve_model(store.path(), "link.gguf"),
            Err(ModelStoreError::Escapes { .. })
        ));
    }
}
