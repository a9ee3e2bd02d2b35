//! Manifest errors: where (file, line, field) and what to do.

use std::fmt;

/// One problem in a manifest, displayed as `wharf.toml:7: job.timeout: message`
/// (parts that are `None` are left out).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub struct ManifestError {
    /// What the file is called in messages, e.g. "wharf.toml" or "my-app/wharf.toml".
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Path of the field, e.g. "job.timeout", "job.trigger[1].schedule", "env.FOO".
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(formatter, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(formatter, ": {field}")?;
        }
        write!(formatter, ": {}", self.message)
    }
}

/// Every problem found in a manifest, in file order; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(transparent)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{ManifestError, ManifestErrors};

    fn error(line: Option<usize>, field: Option<&str>) -> ManifestError {
        ManifestError {
            file: "wharf.toml".to_string(),
            line,
            field: field.map(str::to_string),
            message: "bad".to_string(),
        }
    }

    #[test]
    fn display() {
        for (line, field, expected) in [
            (
                Some(7),
                Some("job.timeout"),
                "wharf.toml:7: job.timeout: bad",
            ),
            (None, Some("command"), "wharf.toml: command: bad"),
            (Some(3), None, "wharf.toml:3: bad"),
            (None, None, "wharf.toml: bad"),
        ] {
            assert_eq!(error(line, field).to_string(), expected);
        }
        let errors = ManifestErrors(vec![error(Some(1), None), error(Some(2), Some("kind"))]);
        assert_eq!(
            errors.to_string(),
            "wharf.toml:1: bad\nwharf.toml:2: kind: bad"
        );
    }
}
