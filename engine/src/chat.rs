//! The model's own chat template (GGUF `tokenizer.chat_template`, or `chat_template` in a
//! Hugging Face folder's `tokenizer_config.json`), rendered with minijinja as Hugging Face's
//! `apply_chat_template` does: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
//! and `raise_exception`.

use minijinja::{Environment, Error, ErrorKind, context};

use crate::{EngineError, Model};

/// A chat template and the special-token strings it may print.
#[derive(Debug, Clone)]
pub(crate) struct ChatTemplate {
    pub(crate) source: String,
    pub(crate) bos_token: String,
    pub(crate) eos_token: String,
}

impl ChatTemplate {
    /// FNV-1a of the template's text, as 16 hex digits: a run records which template it used.
    pub(crate) fn hash(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.source.bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

impl Model {
    /// The content hash of the model's chat template, or `None` when it has none.
    pub fn chat_template_hash(&self) -> Option<String> {
        self.chat_template.as_ref().map(ChatTemplate::hash)
    }

    /// The model's chat template applied to one user turn, with the assistant's turn opened.
    /// A BOS token the template writes is dropped when the tokenizer adds BOS itself, so the
    /// prompt never starts with two.
    pub fn apply_chat_template(&self, user: &str) -> Result<String, EngineError> {
        self.apply_chat_template_turns(&[("user", user)])
    }

    /// The model's chat template applied to a chat of `(role, content)` turns (`user`,
    /// `assistant`, `system`), with the assistant's next turn opened; BOS as in
    /// [`Model::apply_chat_template`].
    pub fn apply_chat_template_turns(&self, turns: &[(&str, &str)]) -> Result<String, EngineError> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or(EngineError::NoChatTemplate)?;
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        let render_error = |e: Error| EngineError::ChatTemplate {
            message: format!("{e:#}"),
        };
        env.add_template("chat", &template.source)
            .map_err(render_error)?;
        let rendered = env
            .get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => turns
                        .iter()
                        .map(|(role, content)| context! { role => *role, content => *content })
                        .collect::<Vec<_>>(),
                    add_generation_prompt => true,
                    bos_token => template.bos_token.as_str(),
                    eos_token => template.eos_token.as_str(),
                })
            })
            .map_err(render_error)?;
        let adds_bos = self
            .tokenizer
            .encode_fast("", true)
            .is_ok_and(|e| !e.get_ids().is_empty());
        Ok(match rendered.strip_prefix(template.bos_token.as_str()) {
            Some(rest) if adds_bos && !template.bos_token.is_empty() => rest.to_owned(),
            _ => rendered,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::LoadOptions;
    use crate::fixture::{self, FixtureSpec};

    #[test]
    fn the_fixtures_own_templates_open_the_assistants_turn() {
        let (_dir, llama) = fixture::load(&FixtureSpec::tiny("llama", 1), &LoadOptions::default());
        assert_eq!(
            llama.apply_chat_template("どれか。").unwrap(),
            "<|im_start|>user\nどれか。<|im_end|>\n<|im_start|>assistant\n"
        );
        let (_dir, gemma) = fixture::load(&FixtureSpec::tiny("gemma3", 1), &LoadOptions::default());
        // Gemma's template writes {{ bos_token }}; the tokenizer adds BOS, so it is dropped here.
        assert_eq!(
            gemma.apply_chat_template("どれか。").unwrap(),
            "<start_of_turn>user\nどれか。<end_of_turn>\n<start_of_turn>model\n"
        );
        // A worked example as a user turn answered by an assistant turn, then the question.
        assert_eq!(
            gemma
                .apply_chat_template_turns(&[
                    ("user", "例題。"),
                    ("assistant", "答え：b"),
                    ("user", "どれか。"),
                ])
                .unwrap(),
            "<start_of_turn>user\n例題。<end_of_turn>\n<start_of_turn>model\n答え：b<end_of_turn>\n\
             <start_of_turn>user\nどれか。<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(llama.chat_template_hash().unwrap().len(), 16);
        assert_ne!(llama.chat_template_hash(), gemma.chat_template_hash());
    }
}
