//! The model store: the one folder models are read from. Jobs name a file inside it; a name
//! that would reach outside (a path, `..`, a link pointing elsewhere) is refused. A name is a
//! GGUF file, a Hugging Face model folder, or a LoRA adapter folder.

use std::path::{Path, PathBuf};

use kokushi_shared::api::StoreEntry;

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error("model name {0:?} is not a plain file name inside the model store")]
    NotAName(String),
    #[error("model {name:?} is not in the model store {store}")]
    Missing { name: String, store: PathBuf },
    #[error(
        "{name:?} already exists in the model store {store} and is not a tuning run's folder; choose another adapter name"
    )]
    Taken { name: String, store: PathBuf },
    #[error("the model store {store} cannot be read: {problem}")]
    Unreadable { store: PathBuf, problem: String },
    #[error("model {name:?} resolves outside the model store {store}")]
    Escapes { name: String, store: PathBuf },
}

/// Whether `name` can name an entry of the store: one path component, not hidden, no
/// separators.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// The path of model `name` inside `store`, after checking it stays inside.
pub fn resolve_model(store: &Path, name: &str) -> Result<PathBuf, ModelStoreError> {
    if !is_plain_name(name) {
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
    if !real.is_file() && !real.is_dir() {
        return Err(missing());
    }
    Ok(real)
}

/// The folder a tuning job writes adapter `name` into: a plain name inside the store, either
/// new or a folder a tuning run left (its `tuning.json` or `checkpoint/`), never a link and
/// never someone else's model.
pub fn adapter_folder(store: &Path, name: &str) -> Result<PathBuf, ModelStoreError> {
    if !is_plain_name(name) {
        return Err(ModelStoreError::NotAName(name.to_owned()));
    }
    let unreadable = |e: std::io::Error| ModelStoreError::Unreadable {
        store: store.to_owned(),
        problem: e.to_string(),
    };
    let store_real = store.canonicalize().map_err(unreadable)?;
    let path = store_real.join(name);
    match std::fs::symlink_metadata(&path) {
        Err(_) => Ok(path),
        Ok(meta)
            if meta.is_dir()
                && (path.join("tuning.json").is_file() || path.join("checkpoint").is_dir()) =>
        {
            Ok(path)
        }
        Ok(_) => Err(ModelStoreError::Taken {
            name: name.to_owned(),
            store: store.to_owned(),
        }),
    }
}

/// Every entry of the store, by name: model files, model folders and adapters, each
/// described by [`kokushi_engine::inspect`]. Hidden names and links that lead out of the store
/// are listed with the problem instead of being read. An adapter is linked to the store entry
/// its base model names (by file name), when there is one.
pub fn list_store(store: &Path) -> Result<Vec<StoreEntry>, ModelStoreError> {
    let unreadable = |e: std::io::Error| ModelStoreError::Unreadable {
        store: store.to_owned(),
        problem: e.to_string(),
    };
    let store_real = store.canonicalize().map_err(unreadable)?;
    let mut entries = Vec::new();
    for item in std::fs::read_dir(&store_real).map_err(unreadable)? {
        let Ok(item) = item else { continue };
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let mut entry = StoreEntry {
            name: name.clone(),
            format: "unknown".to_owned(),
            architecture: None,
            quantization: None,
            parameters: None,
            size_bytes: 0,
            runnable: false,
            base_model: None,
            base_entry: None,
            rank: None,
            alpha: None,
            problem: None,
        };
        match resolve_model(&store_real, &name) {
            Err(e) => entry.problem = Some(e.to_string()),
            Ok(path) => match kokushi_engine::inspect(&path) {
                Err(e) => entry.problem = Some(e.to_string()),
                Ok(found) => {
                    entry.format = found.format.id().to_owned();
                    entry.architecture = found.architecture;
                    entry.quantization = found.quantization;
                    entry.parameters = found.parameters;
                    entry.size_bytes = found.size_bytes;
                    entry.runnable = found.runnable;
                    entry.base_model = found.base_model;
                    entry.rank = found.rank;
                    entry.alpha = found.alpha;
                    if found.tuning_finished == Some(false) {
                        entry.runnable = false;
                        entry.problem = Some("its tuning run has not finished".to_owned());
                    }
                }
            },
        }
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<String> = entries
        .iter()
        .filter(|e| e.format != "peft-lora" && e.problem.is_none())
        .map(|e| e.name.clone())
        .collect();
    for entry in &mut entries {
        entry.base_entry = entry.base_model.as_deref().and_then(|base| {
            let file = Path::new(base.trim_end_matches('/'))
                .file_name()?
                .to_string_lossy()
                .into_owned();
            names.iter().find(|n| **n == file).cloned()
        });
    }
    Ok(entries)
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

    #[test]
    fn the_store_lists_models_and_adapters_linked_to_their_base() {
        let store = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        kokushi_engine::fixture::write_tiny_llama_gguf(&store.path().join("base.gguf"), 1)
            .expect("fixture");
        let adapter = store.path().join("my-lora");
        std::fs::create_dir(&adapter).expect("mkdir");
        std::fs::write(
            adapter.join("adapter_config.json"),
            r#"{"r": 4, "lora_alpha": 8, "base_model_name_or_path": "/elsewhere/base.gguf"}"#,
        )
        .expect("write");
        std::fs::write(adapter.join("adapter_model.safetensors"), b"x").expect("write");
        std::fs::write(store.path().join("notes.txt"), b"hello").expect("write");
        std::fs::write(store.path().join(".hidden"), b"x").expect("write");
        std::fs::write(outside.path().join("secret.gguf"), b"x").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.gguf"),
            store.path().join("link.gguf"),
        )
        .expect("symlink");

        let entries = list_store(store.path()).expect("list");
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        #[cfg(unix)]
        assert_eq!(names, ["base.gguf", "link.gguf", "my-lora", "notes.txt"]);
        let base = &entries[0];
        assert_eq!((base.format.as_str(), base.runnable), ("gguf", true));
        assert_eq!(base.architecture.as_deref(), Some("llama"));
        let lora = entries
            .iter()
            .find(|e| e.name == "my-lora")
            .expect("adapter");
        assert_eq!(lora.format, "peft-lora");
        assert_eq!(lora.base_entry.as_deref(), Some("base.gguf"));
        assert_eq!(lora.rank, Some(4));
        let notes = entries
            .iter()
            .find(|e| e.name == "notes.txt")
            .expect("notes");
        assert!(!notes.runnable && notes.problem.is_some(), "{notes:?}");
        #[cfg(unix)]
        {
            let link = entries
                .iter()
                .find(|e| e.name == "link.gguf")
                .expect("link");
            assert!(
                link.problem
                    .as_deref()
                    .is_some_and(|p| p.contains("outside")),
                "{link:?}"
            );
        }
        assert!(matches!(
            list_store(&store.path().join("absent")),
            Err(ModelStoreError::Unreadable { .. })
        ));
    }
}
