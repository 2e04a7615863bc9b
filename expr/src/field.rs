//! Errors about one field of a spec document (a FeatureSet, an Offer), shared so that
//! every spec reports and renders them alike: the field's path, and either a message
//! or the diagnostics of the expression it holds.

use crate::{Diagnostics, Program, Schema};

/// A problem with one field, named by its path (`spec.features[2].window`).
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// The field's value is invalid.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The field holds an expression that does not compile.
    #[error("{path}: {diagnostics}")]
    Expr {
        path: String,
        /// The expression's text, which the diagnostics' spans point into.
        source_text: String,
        #[source]
        diagnostics: Diagnostics,
    },
}

impl FieldError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn path(&self) -> &str {
        match self {
            FieldError::Invalid { path, .. } | FieldError::Expr { path, .. } => path,
        }
    }
}

/// Compiles the expression held by the field at `path`.
pub fn compile_field(path: impl Into<String>, src: &str, schema: &Schema) -> Result<Program, FieldError> {
    crate::compile(src, schema).map_err(|diagnostics| FieldError::Expr {
        path: path.into(),
        source_text: src.to_owned(),
        diagnostics,
    })
}

/// Compiles the condition held by the field at `path` (see [`crate::compile_condition`]).
pub fn compile_condition_field(
    path: impl Into<String>,
    src: &str,
    schema: &Schema,
    what: &str,
) -> Result<Program, FieldError> {
    crate::compile_condition(src, schema, what).map_err(|diagnostics| FieldError::Expr {
        path: path.into(),
        source_text: src.to_owned(),
        diagnostics,
    })
}
