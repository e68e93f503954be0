//! Where each value of a YAML (or JSON) document is, by path, so that errors
//! found after deserialising (an unknown event id, a bad condition, a cycle)
//! still point at a line and column. serde gives positions only for its own
//! errors; this reads the same text once more with yaml-rust2's event
//! parser, which marks every node.
//!
//! Paths are written `tracks[0].events[1].start_when`; the document root is
//! the empty path.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A place in the text: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    /// Where the text of a string value starts, past its opening quote, when
    /// it sits on one line (so a column inside it can be added).
    pub inline: bool,
}

/// Every node's position, by path.
#[derive(Debug, Default)]
pub struct Positions {
    at: HashMap<String, Pos>,
}

impl Positions {
    /// Reads positions from `text`; a text yaml-rust2 cannot read gives none
    /// (the serde error reports that text's problem).
    pub fn of(text: &str) -> Positions {
        let mut w = Walker::default();
        let _ = Parser::new_from_str(text).load(&mut w, false);
        Positions { at: w.at }
    }

    /// The position of the value at `path`, or of the nearest enclosing
    /// value that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = match p.rfind(['.', '[']) {
                Some(i) => &p[..i],
                None => "",
            };
        }
    }

    /// The position of `path`'s value plus `offset` bytes into its text,
    /// when the value is a one-line string (else the value's own position).
    pub fn find_in(&self, path: &str, offset: usize) -> Option<Pos> {
        let exact = self.at.get(path).copied();
        match exact {
            Some(p) if p.inline => Some(Pos {
                col: p.col + offset,
                ..p
            }),
            _ => self.find(path),
        }
    }
}

/// One open container while walking the events.
enum Frame {
    Map {
        path: String,
        /// The key whose value comes next, or None when a key comes next.
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    at: HashMap<String, Pos>,
}

impl Walker {
    /// The path of the node that starts now, or None when it is a map key
    /// (the key is remembered instead).
    fn place(&mut self, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    // A complex (non-scalar) key gets a placeholder name.
                    *key = Some(scalar.unwrap_or("?").to_string());
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = |inline| Pos {
            line: mark.line(),
            col: mark.col() + 1,
            inline,
        };
        match ev {
            Event::Scalar(value, style, ..) => {
                if let Some(p) = self.place(Some(&value)) {
                    let quoted = matches!(
                        style,
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                    );
                    let inline = matches!(style, TScalarStyle::Plain) || quoted;
                    let mut at = pos(inline);
                    if quoted {
                        at.col += 1;
                    }
                    self.at.insert(p, at);
                }
            }
            Event::MappingStart(..) => {
                let p = self.place(None).unwrap_or_else(|| "?".into());
                self.at.insert(p.clone(), pos(false));
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.place(None).unwrap_or_else(|| "?".into());
                self.at.insert(p.clone(), pos(false));
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                if let Some(p) = self.place(None) {
                    self.at.insert(p, pos(false));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let text = "duration: 60s\ntracks:\n  - axis: cpu\n    events:\n      - at: 0s\n        start_when: 'crashes >= 1'\n      - {at: 5s, for: 1s}\n";
        let p = Positions::of(text);
        let at = |path: &str| p.find(path).map(|x| (x.line, x.col));
        assert_eq!(at("duration"), Some((1, 11)));
        assert_eq!(at("tracks[0].axis"), Some((3, 11)));
        assert_eq!(at("tracks[0].events[0].at"), Some((5, 13)));
        // Quoted: the column of the text, past the quote.
        assert_eq!(at("tracks[0].events[0].start_when"), Some((6, 22)));
        assert_eq!(
            p.find_in("tracks[0].events[0].start_when", 8)
                .map(|x| (x.line, x.col)),
            Some((6, 30))
        );
        assert_eq!(at("tracks[0].events[1].for"), Some((7, 23)));
        // A path with no node of its own falls back to its parent.
        assert_eq!(at("tracks[0].events[1].shape"), Some((7, 9)));
        assert_eq!(p.find("nothing.here").map(|x| x.line), Some(1));
    }

    #[test]
    fn json_too() {
        let p = Positions::of("{\"duration\": \"1s\",\n \"tracks\": [{\"axis\": \"cpu\"}]}");
        assert_eq!(p.find("tracks[0].axis").map(|x| x.line), Some(2));
    }
}
