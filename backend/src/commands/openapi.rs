//! `kokushi openapi`: prints the OpenAPI document of the JSON API
//! (`kokushi_backend::openapi`), the same one the server serves and `docs/openapi.json` holds.

pub fn openapi() -> anyhow::Result<()> {
    print!("{}", kokushi_backend::openapi::document_json());
    Ok(())
}
