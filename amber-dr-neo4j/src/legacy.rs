//! Replay of a legacy `neo4j.cypher` export (`apoc.export.cypher.all`, cypher-shell format).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Splits a cypher-shell script into statements and `:commands`, one at a time, without
/// holding more than one statement in memory. A statement ends at a `;` outside quotes
/// (`'…'`, `"…"` with backslash escapes, `` `…` ``).
pub(crate) struct ScriptReader<R> {
    input: R,
    line: String,
    buf: String,
    quote: Option<char>,
    escaped: bool,
    pending: std::collections::VecDeque<Item>,
    /// 1-based line number of the line last read.
    pub(crate) line_no: u64,
}

/// One piece of a script.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A Cypher statement, without its `;`.
    Statement(String),
    /// A cypher-shell command such as `:begin`, lower-cased, without arguments.
    Command(String),
}

impl<R: AsyncBufRead + Unpin> ScriptReader<R> {
    pub(crate) fn new(input: R) -> Self {
        Self {
            input,
            line: String::new(),
            buf: String::new(),
            quote: None,
            escaped: false,
            pending: Default::default(),
            line_no: 0,
        }
    }

    /// The next statement or command; `None` at the end. Text after the last `;` that is not
    /// only whitespace is an error (an unterminated statement).
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            self.line.clear();
            let n = self.input.read_line(&mut self.line).await?;
            if n == 0 {
                if self.buf.trim().is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the script ends inside a statement (no closing `;`): {}",
                        preview(&self.buf)
                    ),
                ));
            }
            self.line_no += 1;
            if self.buf.trim().is_empty() && self.quote.is_none() {
                let t = self.line.trim();
                if let Some(cmd) = t.strip_prefix(':') {
                    let name = cmd.split_whitespace().next().unwrap_or("").to_lowercase();
                    self.buf.clear();
                    self.pending.push_back(Item::Command(name));
                    continue;
                }
            }
            let line = std::mem::take(&mut self.line);
            for c in line.chars() {
                match self.quote {
                    Some(q) => {
                        self.buf.push(c);
                        if self.escaped {
                            self.escaped = false;
                        } else if c == '\\' && q != '`' {
                            self.escaped = true;
                        } else if c == q {
                            self.quote = None;
                        }
                    }
                    None if c == ';' => {
                        let stmt = std::mem::take(&mut self.buf);
                        if !stmt.trim().is_empty() {
                            self.pending
                                .push_back(Item::Statement(stmt.trim().to_string()));
                        }
                    }
                    None => {
                        if c == '\'' || c == '"' || c == '`' {
                            self.quote = Some(c);
                        }
                        self.buf.push(c);
                    }
                }
            }
            self.line = line;
        }
    }
}

/// The start of a statement, for messages.
pub(crate) fn preview(s: &str) -> String {
    let s = s.trim();
    let cut: String = s.chars().take(120).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn items(text: &str) -> Vec<Item> {
        let mut r = ScriptReader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(i) = r.next().await.unwrap_or(None) {
            out.push(i);
        }
        out
    }

    #[tokio::test]
    async fn splits_statements_and_commands_outside_quotes() {
        let got = items(
            ":begin\nCREATE (n {a: 'x;y', b: \"q\\\";\"}) SET n:`we;ird`;\nRETURN 1; RETURN 2;\n:commit\n",
        )
        .await;
        assert_eq!(
            got,
            vec![
                Item::Command("begin".into()),
                Item::Statement("CREATE (n {a: 'x;y', b: \"q\\\";\"}) SET n:`we;ird`".into()),
                Item::Statement("RETURN 1".into()),
                Item::Statement("RETURN 2".into()),
                Item::Command("commit".into()),
            ]
        );
    }

    #[tokio::test]
    async fn an_unterminated_statement_is_an_error() {
        let mut r = ScriptReader::new("RETURN 1;\nCREATE (n)".as_bytes());
        assert!(matches!(r.next().await, Ok(Some(Item::Statement(_)))));
        assert!(r.next().await.is_err());
    }
}
