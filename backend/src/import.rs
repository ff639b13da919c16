//! Reading exam sets from disk: one file, or a folder of them (read in name order, so
//! `116-A.jsonl` comes before `116-B.jsonl`). `.jsonl` files are IgakuQA JSON lines, `.csv`
//! files the CSV upload format (docs/exam-set-format.md) or, with [`SetFormat::Jmmlu`], JMMLU
//! subject files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kokushi_shared::Question;
use kokushi_shared::igakuqa::{FormatError, ImportPreview, Importer};
use kokushi_shared::repair::RepairPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no .jsonl, .json or .csv files")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Namespace(String),
    #[error("{}", problems("the exam set", .0))]
    Invalid(Vec<FormatError>),
}

/// `N problem(s) in WHAT:` and each problem on an indented line of its own: how every check of
/// a file that found several faults reports them.
pub fn problems<E: std::fmt::Display>(what: &str, errors: &[E]) -> String {
    let mut out = format!("{} problem(s) in {what}:", errors.len());
    for e in errors {
        out.push_str(&format!("\n  {e}"));
    }
    out
}

/// How the files of an exam set are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SetFormat {
    /// By extension: `.jsonl` as IgakuQA JSON lines, `.csv` as the CSV upload format.
    #[default]
    Auto,
    /// JMMLU subject CSVs (no header; question, A, B, C, D, answer); the subject is the file
    /// name. Give a namespace such as `jmmlu`.
    Jmmlu,
}

/// The exam files a path names: itself, or the `.jsonl` and `.csv` files in the folder and its
/// sub-folders (such as one folder per exam year), sorted by path; hidden entries are skipped.
pub fn exam_files(path: &Path) -> Result<Vec<PathBuf>, ImportError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    collect_exam_files(path, &mut files, 0)?;
    files.sort();
    if files.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(files)
}

fn collect_exam_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() && depth < 4 {
            collect_exam_files(&path, files, depth + 1)?;
        } else if path.is_file()
            && path
                .extension()
                .is_some_and(|e| e == "jsonl" || e == "csv" || e == "json")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Parses every file under `paths` as the medical exam (no namespace); all or nothing.
pub fn read_exam_set(paths: &[PathBuf]) -> Result<Vec<Question>, ImportError> {
    read_exam_set_as(paths, None, SetFormat::Auto)
}

/// Parses every file under `paths`, ids prefixed with `namespace` if given; all or nothing.
pub fn read_exam_set_as(
    paths: &[PathBuf],
    namespace: Option<&str>,
    format: SetFormat,
) -> Result<Vec<Question>, ImportError> {
    let report = read_exam_set_report(
        paths,
        namespace,
        format,
        RepairPolicy::None,
        BTreeMap::new(),
    )?;
    if report.errors.is_empty() {
        Ok(report.questions)
    } else {
        Err(ImportError::Invalid(report.errors))
    }
}

/// Everything an import of `paths` finds ([`ImportPreview`]): the questions, every problem,
/// the repairs proposed (those `policy` accepts applied) and the records `exclude` leaves out.
/// Only a file that cannot be read, or is not UTF-8, is an `Err`.
pub fn read_exam_set_report(
    paths: &[PathBuf],
    namespace: Option<&str>,
    format: SetFormat,
    policy: RepairPolicy,
    exclude: BTreeMap<String, String>,
) -> Result<ImportPreview, ImportError> {
    let mut read = Vec::new();
    for path in paths {
        for file in exam_files(path)? {
            let bytes = std::fs::read(&file).map_err(|source| ImportError::Io {
                path: file.clone(),
                source,
            })?;
            read.push((file.display().to_string(), bytes));
        }
    }
    import_texts(
        read.iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
        namespace,
        format,
        policy,
        exclude,
    )
}

/// Everything an import of `files` (name, bytes) finds, read in the order given: the one
/// reading behind `kokushi import` and the upload API. A file that is not UTF-8 is an `Err`;
/// every other problem is listed in the report.
pub fn import_texts<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    namespace: Option<&str>,
    format: SetFormat,
    policy: RepairPolicy,
    exclude: BTreeMap<String, String>,
) -> Result<ImportPreview, ImportError> {
    let importer = match namespace {
        Some(ns) => Importer::with_namespace(ns).map_err(ImportError::Namespace)?,
        None => Importer::new(),
    };
    let mut importer = importer.with_repairs(policy, exclude);
    for (name, bytes) in files {
        let content = kokushi_shared::igakuqa::text_of(name, bytes)
            .map_err(|e| ImportError::Invalid(vec![e]))?;
        match format {
            SetFormat::Auto => importer.add_file(name, content),
            SetFormat::Jmmlu => {
                let subject = Path::new(name)
                    .file_stem()
                    .map_or_else(|| "jmmlu".to_owned(), |s| s.to_string_lossy().into_owned());
                importer.add_jmmlu(name, &subject, content);
            }
        }
    }
    Ok(importer.finish_report())
}
