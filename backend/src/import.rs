//! Reading IgakuQA-format exam sets from disk: one `.jsonl` file, or a folder of them (read in
//! name order, so `116-A.jsonl` comes before `116-B.jsonl`).

use std::path::{Path, PathBuf};

use kokushi_shared::Question;
use kokushi_shared::igakuqa::{FormatError, Importer};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no .jsonl files")]
    Empty { path: PathBuf },
    #[error("{} problem(s) in the exam set:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FormatError>),
}

/// The `.jsonl` files a path names: itself, or those in the folder, sorted.
pub fn exam_files(path: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(files)
}

/// Parses every file under `paths`; all or nothing.
pub fn read_exam_set(paths: &[PathBuf]) -> Result<Vec<Question>, ImportError> {
    let mut importer = Importer::new();
    for path in paths {
        for file in exam_files(path)? {
            let content = std::fs::read_to_string(&file).map_err(|source| ImportError::Io {
                path: file.clone(),
                source,
            })?;
            importer.add_file(&file.display().to_string(), &content);
        }
    }
    importer.finish().map_err(ImportError::Invalid)
}
