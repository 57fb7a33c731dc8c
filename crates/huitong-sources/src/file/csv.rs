//! CSV files (RFC 4180): a header row naming the columns, then one record per row. Quoted
//! cells may hold the delimiter, line breaks and doubled quotes. An empty unquoted cell is
//! null; `""` is the empty string. Values are read as on a command line
//! (`Value::parse_text`): dates `YYYY-MM-DD`, timestamps RFC 3339, bools `true`/`false`,
//! bytes base64.

use std::collections::BTreeMap;
use std::path::Path;

use huitong_adapter::{Error, MemTable, Value};
use huitong_core::ResourceSpec;

/// One cell as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) quoted: bool,
}

/// A record: the line it starts on, and its cells.
pub(crate) type Row = (usize, Vec<Cell>);

/// The records of CSV text. Blank lines are skipped. Errors are (line, problem), never quoting
/// the text.
pub(crate) fn parse(text: &str, delimiter: u8) -> Result<Vec<Row>, (usize, String)> {
    let delimiter = char::from(delimiter);
    let mut records = Vec::new();
    let mut cells: Vec<Cell> = Vec::new();
    let mut cell = Cell {
        text: String::new(),
        quoted: false,
    };
    let mut in_quotes = false;
    let mut closed = false;
    let mut line = 1usize;
    let mut start = 1usize;
    let mut chars = text.chars().peekable();
    let end_cell = |cells: &mut Vec<Cell>, cell: &mut Cell| {
        cells.push(std::mem::replace(
            cell,
            Cell {
                text: String::new(),
                quoted: false,
            },
        ));
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.text.push('"');
                }
                '"' => {
                    in_quotes = false;
                    closed = true;
                }
                '\n' => {
                    line += 1;
                    cell.text.push('\n');
                }
                _ => cell.text.push(c),
            }
            continue;
        }
        match c {
            c if c == delimiter => {
                end_cell(&mut cells, &mut cell);
                closed = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_cell(&mut cells, &mut cell);
                closed = false;
                let blank = cells.len() == 1 && cells[0].text.is_empty() && !cells[0].quoted;
                if !blank {
                    records.push((start, std::mem::take(&mut cells)));
                }
                cells.clear();
                line += 1;
                start = line;
            }
            _ if closed => {
                return Err((
                    line,
                    "there is text after a closing quote; quote the whole cell".into(),
                ));
            }
            '"' if cell.text.is_empty() && !cell.quoted => {
                in_quotes = true;
                cell.quoted = true;
            }
            '"' => {
                return Err((
                    line,
                    "a quote inside an unquoted cell; quote the whole cell and double the quote"
                        .into(),
                ));
            }
            _ => cell.text.push(c),
        }
    }
    if in_quotes {
        return Err((
            start,
            "a quoted cell is not closed before the end of the file".into(),
        ));
    }
    if !cell.text.is_empty() || cell.quoted || !cells.is_empty() {
        end_cell(&mut cells, &mut cell);
        records.push((start, cells));
    }
    Ok(records)
}

/// Reads a CSV file into a table: the header names each field's column (`columns` maps a
/// field to a header of another name); other columns are ignored.
pub(crate) fn read(
    spec: ResourceSpec,
    path: &Path,
    delimiter: u8,
    columns: &BTreeMap<String, String>,
) -> Result<MemTable, Error> {
    let data_error = |line: usize, field: Option<String>, problem: String| Error::Data {
        file: path.to_owned(),
        line,
        field,
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        action: "read",
        path: path.to_owned(),
        source: e,
    })?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes
                .get(..e.valid_up_to())
                .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
                + 1;
            return Err(data_error(line, None, "it is not UTF-8 text".into()));
        }
    };
    // Spreadsheet programs start CSV files with a byte-order mark.
    let text = text.trim_start_matches('\u{feff}');
    let records = parse(text, delimiter).map_err(|(line, p)| data_error(line, None, p))?;
    let mut rows = records.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(data_error(
            1,
            None,
            "the file is empty; it needs a header row naming the columns".into(),
        ));
    };
    let header: Vec<&str> = header.iter().map(|c| c.text.trim()).collect();
    for (i, h) in header.iter().enumerate() {
        if header.get(..i).is_some_and(|before| before.contains(h)) && !h.is_empty() {
            return Err(data_error(
                1,
                None,
                format!("the header names column {h:?} twice"),
            ));
        }
    }
    let mut cols = Vec::with_capacity(spec.fields().len());
    for f in spec.fields() {
        let want = columns
            .get(f.name.as_str())
            .map_or(f.name.as_str(), |h| h.trim());
        let Some(col) = header.iter().position(|h| *h == want) else {
            return Err(data_error(
                1,
                Some(f.name.to_string()),
                format!(
                    "the header has no column {want:?}; add it, or name the field's column in \
                     the source's columns"
                ),
            ));
        };
        cols.push((col, f.ty, f.name.to_string()));
    }
    let width = header.len();
    let mut table = MemTable::new(spec);
    let mut lines = Vec::new();
    for (line, cells) in rows {
        if cells.len() != width {
            return Err(data_error(
                line,
                None,
                format!(
                    "it has {} cells; the header has {width} columns",
                    cells.len()
                ),
            ));
        }
        let mut row = Vec::with_capacity(cols.len());
        for (col, ty, name) in &cols {
            let cell = cells.get(*col).ok_or_else(|| {
                data_error(line, Some(name.clone()), "the cell is missing".into())
            })?;
            let value = if cell.text.is_empty() && !cell.quoted {
                Value::null()
            } else {
                Value::parse_text(&cell.text, *ty)
                    .map_err(|e| data_error(line, Some(name.clone()), e.to_string()))?
            };
            row.push(value);
        }
        table
            .push(row.into_boxed_slice())
            .map_err(|e| super::row_error(path, line, &lines, e))?;
        lines.push(line);
    }
    table.shrink_to_fit();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(texts: &[(&str, bool)]) -> Vec<Cell> {
        texts
            .iter()
            .map(|(t, q)| Cell {
                text: (*t).into(),
                quoted: *q,
            })
            .collect()
    }

    #[test]
    fn quoting_follows_rfc_4180() {
        let text = "a,b,c\r\n1,\"x, \"\"y\"\"\",\n\n2,\"多\nline\",\"\"\n3,,z";
        let records = parse(text, b',').unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[1],
            (2, cells(&[("1", false), ("x, \"y\"", true), ("", false)]))
        );
        assert_eq!(
            records[2],
            (4, cells(&[("2", false), ("多\nline", true), ("", true)]))
        );
        assert_eq!(
            records[3],
            (6, cells(&[("3", false), ("", false), ("z", false)]))
        );
        assert_eq!(
            parse("a;b\n1;2\n", b';').unwrap()[1].1,
            cells(&[("1", false), ("2", false)])
        );
    }

    #[test]
    fn malformed_quoting_names_the_line() {
        assert_eq!(parse("a\nx\"y\n", b',').unwrap_err().0, 2);
        assert_eq!(parse("a\n\"x\"y\n", b',').unwrap_err().0, 2);
        assert_eq!(parse("a\n\"open\n\n", b',').unwrap_err().0, 2);
    }
}
