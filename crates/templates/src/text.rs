//! Template text: literal characters and `{{name}}` references.
//!
//! Parsed once, when the template is created, so a reference to nothing is
//! refused then rather than at some later instantiation. Rendering is a
//! single pass over the parsed pieces: a value is inserted as data and is
//! never parsed again, so a parameter value containing `{{other}}` stays
//! those characters.

use std::fmt;

/// One piece of a template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    /// The name inside `{{ }}`, trimmed.
    Ref(String),
}

/// A parsed template string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text {
    pieces: Vec<Piece>,
}

impl Text {
    /// Parses `{{name}}` references (spaces inside the braces allowed).
    /// A name is a letter or `_` followed by letters, digits or `_`;
    /// anything else between `{{` and `}}`, or a `{{` without its `}}`, is
    /// an error naming the position.
    pub fn parse(s: &str) -> Result<Text, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "\"{{{{\" at character {} has no closing \"}}}}\"",
                    offset + open
                ));
            };
            let name = after[..close].trim();
            if !is_name(name) {
                return Err(format!(
                    "\"{{{{{}}}}}\" at character {} is not a reference: write {{{{name}}}} with a \
                     parameter name (letters, digits, _)",
                    &after[..close],
                    offset + open
                ));
            }
            pieces.push(Piece::Ref(name.to_string()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        Ok(Text { pieces })
    }

    /// The names this text refers to, in order.
    pub fn refs(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Ref(n) => Some(n.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// The single reference this text consists of, if it is exactly one.
    pub fn sole_ref(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Ref(n)] => Some(n),
            _ => None,
        }
    }

    /// Whether the text has no reference at all.
    pub fn is_literal(&self) -> bool {
        self.refs().next().is_none()
    }

    /// The text with each reference replaced by `lookup(name)`. Values are
    /// inserted verbatim, once.
    pub fn render(
        &self,
        mut lookup: impl FnMut(&str) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Ref(n) => out.push_str(&lookup(n)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Text {
    /// The text as written (normalized spacing inside braces).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => f.write_str(s)?,
                Piece::Ref(n) => write!(f, "{{{{{n}}}}}")?,
            }
        }
        Ok(())
    }
}

/// A parameter or loop-variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_references() {
        let t = Text::parse("erase {{ site }} now {{n}}").unwrap();
        assert_eq!(t.refs().collect::<Vec<_>>(), ["site", "n"]);
        assert_eq!(t.to_string(), "erase {{site}} now {{n}}");
        assert!(Text::parse("plain").unwrap().is_literal());
        assert_eq!(Text::parse("{{x}}").unwrap().sole_ref(), Some("x"));
        assert_eq!(Text::parse("a{{x}}").unwrap().sole_ref(), None);
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        let e = Text::parse("a {{site").unwrap_err();
        assert!(e.contains("character 2") && e.contains("no closing"), "{e}");
        let e = Text::parse("{{ site.name }}").unwrap_err();
        assert!(e.contains("not a reference"), "{e}");
        assert!(Text::parse("{{}}").is_err());
        assert!(Text::parse("{{1x}}").is_err());
    }

    #[test]
    fn rendering_inserts_values_as_data() {
        let t = Text::parse("x={{a}};").unwrap();
        let out = t
            .render(|_| Ok("{{b}} \"}\" {\"json\": 1}".to_string()))
            .unwrap();
        assert_eq!(out, "x={{b}} \"}\" {\"json\": 1};");
    }
}
