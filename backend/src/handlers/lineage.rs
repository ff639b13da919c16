//! `GET /api/runs/{id}/lineage`: everything a run's score depends on — the exam set's content
//! hash, the prompt template's hash, the model and adapter files' hashes, the tuning recipe,
//! decoding settings, rules and software versions — so a score can be cited and redone.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use kokushi_shared::api::RunLineage;
use kokushi_shared::job::{EvalSettings, LoglikTarget, Scoring};
use kokushi_shared::prompt::PromptFormat;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// SHA-256 of `format` applied to a fixed probe question.
pub fn prompt_template_sha256(format: PromptFormat) -> String {
    let probe = format.render(
        "{question}",
        &["{a}", "{b}", "{c}", "{d}", "{e}"].map(str::to_owned),
    );
    hex(&Sha256::digest(probe.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Files hashed already, by path, size and modification time: a multi-gigabyte model is read
/// once per change, not once per request.
static HASHED: Mutex<Option<HashMap<FileKey, String>>> = Mutex::new(None);

/// A file as it is now: path, size, modification time.
type FileKey = (PathBuf, u64, SystemTime);

fn hash_file(path: &Path, into: &mut Sha256) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        into.update(&buffer[..n]);
    }
}

/// SHA-256 of a file; of a folder, the SHA-256 of a line per file in path order: its path
/// relative to the folder, a NUL, its own SHA-256.
pub fn sha256_of_entry(path: &Path) -> std::io::Result<String> {
    if !std::fs::metadata(path)?.is_dir() {
        return sha256_of_file(path);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(path).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(sha256_of_file(&file)?.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of one file, remembered by path, size and modification time.
fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    let key = (path.to_owned(), meta.len(), meta.modified()?);
    if let Some(known) = HASHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(known.clone());
    }
    let mut hasher = Sha256::new();
    hash_file(path, &mut hasher)?;
    let digest = hex(&hasher.finalize());
    HASHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, digest.clone());
    Ok(digest)
}

/// The hash of a store entry, or `None` when it is gone or unreadable.
async fn store_hash(store: &Path, name: &str) -> Option<String> {
    let path = kokushi_worker::resolve_model(store, name).ok()?;
    web::block(move || sha256_of_entry(&path).ok())
        .await
        .ok()
        .flatten()
}

/// How the answers were chosen, in words.
fn decoding(settings: &EvalSettings) -> &'static str {
    match (settings.scoring, settings.loglik_target) {
        (Scoring::Generation, _) => {
            "greedy (the most likely token at each step), stopped at the end of the answer"
        }
        (Scoring::Loglik, LoglikTarget::Letter) => {
            "log-likelihood: each choice letter's log-probability as the reply's first token; \
             the most probable letters, as many as the question asks for"
        }
        (Scoring::Loglik, LoglikTarget::Text) => {
            "log-likelihood: the mean log-probability of each choice's text as the reply; the \
             most probable choices, as many as the question asks for"
        }
    }
}

pub async fn lineage(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::parse_id("run", &path)?;
    let crate::db::runs::LineageRow {
        exam_set_id,
        model,
        adapter,
        prompt_format: format,
        model_info,
        worker,
        tuning_id,
        settings,
        prompt_id,
        shot_pool_exam_set_id,
    } = state
        .db
        .run_lineage_row(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let exam_set = state
        .db
        .exam_set(exam_set_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("run {id}'s exam set is gone")))?;
    let prompt_template_sha256 = PromptFormat::from_id(&format)
        .map(prompt_template_sha256)
        .unwrap_or_default();
    let model_sha256 = store_hash(&state.model_store, &model).await;
    let adapter_sha256 = match &adapter {
        Some(a) => store_hash(&state.model_store, a).await,
        None => None,
    };
    let tuning_id = match (tuning_id, &adapter) {
        (Some(t), _) => Some(t),
        (None, Some(a)) => state.db.tuning_of_adapter(&caller.scope()?, a).await?,
        (None, None) => None,
    };
    let tuning = match tuning_id {
        Some(t) => state.db.tuning_summary(t).await?,
        None => None,
    };
    let rules_version = state.db.run_detail(id).await?.and_then(|d| d.rules_version);
    let leakage = match &adapter {
        None => "not applicable: no adapter".to_owned(),
        Some(_) => {
            "not checked by the server: run `kokushi leakage --adapter DIR --exam-set PATH` \
                    (kokushi eval applies the gate to a tuned adapter)"
                .to_owned()
        }
    };
    let shot_pool = match shot_pool_exam_set_id {
        Some(pool) => state.db.exam_set(pool).await?,
        None => None,
    };
    Ok(HttpResponse::Ok().json(RunLineage {
        run_id: id,
        exam_set,
        prompt_format: format,
        prompt_template_sha256,
        model,
        model_sha256,
        model_info,
        adapter,
        adapter_sha256,
        tuning,
        prompt_id: prompt_id.unwrap_or_else(|| settings.prompt_id(None)),
        decoding: decoding(&settings).to_owned(),
        max_new_tokens: settings.max_new_tokens,
        settings,
        shot_pool,
        seed: None,
        rules_version,
        kokushi_version: env!("CARGO_PKG_VERSION").to_owned(),
        worker,
        leakage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoding_names_what_a_loglik_run_ranked() {
        let mut settings = EvalSettings::new(PromptFormat::ChatmlJa, 32);
        assert!(decoding(&settings).starts_with("greedy"));
        settings.scoring = Scoring::Loglik;
        assert!(decoding(&settings).contains("letter"));
        settings.loglik_target = LoglikTarget::Text;
        assert!(decoding(&settings).contains("choice's text"));
        assert!(!decoding(&settings).contains("letter"));
    }

    #[test]
    fn each_prompt_format_has_its_own_template_hash() {
        let hashes: std::collections::HashSet<String> = PromptFormat::ALL
            .iter()
            .map(|f| prompt_template_sha256(*f))
            .collect();
        assert_eq!(hashes.len(), PromptFormat::ALL.len());
        assert_eq!(
            prompt_template_sha256(PromptFormat::ChatmlJa),
            prompt_template_sha256(PromptFormat::ChatmlJa)
        );
    }

    #[test]
    fn a_folder_hash_covers_names_and_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.bin"), b"one").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b.bin"), b"two").expect("write");
        let before = sha256_of_entry(dir.path()).expect("hash");
        let file = sha256_of_entry(&dir.path().join("a.bin")).expect("hash");
        // sha256("one")
        assert_eq!(
            file,
            "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
        );
        std::fs::rename(dir.path().join("sub/b.bin"), dir.path().join("sub/c.bin"))
            .expect("rename");
        let after = sha256_of_entry(dir.path()).expect("hash");
        assert_ne!(before, after, "a renamed file changes the folder's hash");
    }
}
