//! HAR files (HTTP Archive 1.2), read one entry at a time.
//!
//! Browsers, mitmproxy and Charles export captured traffic as one JSON document,
//! `{"log": {..., "entries": [entry, ...]}}`, that can run to gigabytes. The reader walks
//! the document with serde's streaming visitors and holds one entry at a time: each entry
//! is read as a JSON value, handed over, and dropped before the next. An entry that is
//! valid JSON but not an exchange (no URL, a body in an unknown encoding) is reported and
//! skipped; a syntax error ends the file (no JSON reader can resynchronise inside a
//! document), reported with how many entries came before it.
//!
//! HAR exporters store the *decoded* response text (`content.text`, base64 when binary)
//! while keeping the original `content-encoding` header; the reader drops that header (and
//! `content-length`) so the core does not try to inflate plain text.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::io::Read;

/// One exchange of a HAR file, as the core needs it.
pub(crate) struct HarExchange {
    pub method: String,
    /// Path and query, from the entry's absolute URL.
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

#[derive(Deserialize)]
struct Entry {
    request: Request,
    response: Response,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct PostData {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    status: i64,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

/// The path and query of an absolute URL (`https://host/v1/x?y` → `/v1/x?y`).
fn path_of(url: &str) -> Result<String, String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| format!("url {url:?} is not absolute"))?;
    let path = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    };
    Ok(path.split('#').next().unwrap_or("/").to_owned())
}

/// Standard base64 (RFC 4648, padding optional, whitespace ignored).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err("response content is not valid base64".into()),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

impl Entry {
    fn into_exchange(self) -> Result<HarExchange, String> {
        let status = u16::try_from(self.response.status)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| {
                format!(
                    "response status {} (no response was captured)",
                    self.response.status
                )
            })?;
        let response_body = match self.response.content {
            Some(Content {
                text: Some(text),
                encoding,
            }) => match encoding.as_deref() {
                None | Some("") => text.into_bytes(),
                Some(e) if e.eq_ignore_ascii_case("base64") => base64_decode(&text)?,
                Some(e) => return Err(format!("unknown content encoding {e:?}")),
            },
            _ => Vec::new(),
        };
        let pairs = |h: Vec<Header>| -> Vec<(String, String)> {
            h.into_iter().map(|h| (h.name, h.value)).collect()
        };
        Ok(HarExchange {
            method: self.request.method,
            path: path_of(&self.request.url)?,
            request_headers: pairs(self.request.headers),
            request_body: self
                .request
                .post_data
                .and_then(|p| p.text)
                .unwrap_or_default()
                .into_bytes(),
            status,
            response_headers: pairs(self.response.headers)
                .into_iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-encoding")
                        && !k.eq_ignore_ascii_case("content-length")
                })
                .collect(),
            response_body,
        })
    }
}

/// Calls `f(index, exchange or reason)` for each entry of the HAR document `r`, in order,
/// holding one entry at a time. `Err` when the document itself is unreadable (then `f` has
/// seen every entry before the fault).
pub(crate) fn for_each_entry<R: Read>(
    r: R,
    f: &mut dyn FnMut(usize, Result<HarExchange, String>),
) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(r);
    let mut seen = 0usize;
    Root { f, seen: &mut seen }
        .deserialize(&mut de)
        .and_then(|found| {
            de.end()?;
            Ok(found)
        })
        .map_err(|e| format!("not a readable HAR document after {seen} entries: {e}"))
        .and_then(|found| {
            if found {
                Ok(())
            } else {
                Err("not a HAR document (no log.entries)".into())
            }
        })
}

/// The walk: `{"log": {"entries": [...]}}`, other members skipped unread.
struct Root<'a> {
    f: &'a mut dyn FnMut(usize, Result<HarExchange, String>),
    seen: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Root<'_> {
    /// Whether `log.entries` was found.
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(Level {
            root: self,
            depth: 0,
        })
    }
}

struct Level<'a> {
    root: Root<'a>,
    /// 0: the document, 1: `log`.
    depth: u8,
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.depth == 0 {
            "a HAR document (an object with \"log\")"
        } else {
            "the HAR log (an object with \"entries\")"
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let want = if self.depth == 0 { "log" } else { "entries" };
        let Root { f, seen } = self.root;
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != want || found {
                map.next_value::<IgnoredAny>()?;
            } else if self.depth == 0 {
                found = map.next_value_seed(LogSeed(Root {
                    f: &mut *f,
                    seen: &mut *seen,
                }))?;
            } else {
                map.next_value_seed(EntriesSeed(Root {
                    f: &mut *f,
                    seen: &mut *seen,
                }))?;
                found = true;
            }
        }
        Ok(found)
    }
}

struct LogSeed<'a>(Root<'a>);

impl<'de> DeserializeSeed<'de> for LogSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(Level {
            root: self.0,
            depth: 1,
        })
    }
}

struct EntriesSeed<'a>(Root<'a>);

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HAR entries (an array)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Root { f, seen } = self.0;
        // One entry in memory at a time: read, handed over, dropped.
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            let index = *seen;
            *seen += 1;
            let entry = Entry::deserialize(v)
                .map_err(|e| e.to_string())
                .and_then(Entry::into_exchange);
            f(index, entry);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_base64() {
        assert_eq!(
            path_of("https://api.openai.com/v1/chat?x=1#f").unwrap(),
            "/v1/chat?x=1"
        );
        assert_eq!(path_of("http://127.0.0.1:8080").unwrap(), "/");
        assert_eq!(path_of("http://h?q").unwrap(), "/?q");
        assert!(path_of("/relative").is_err());
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn entries_one_by_one_and_bad_ones_reported() {
        let doc = r#"{"log":{"version":"1.2","creator":{"name":"t"},"entries":[
            {"request":{"method":"POST","url":"https://x/v1/chat/completions","headers":[],
              "postData":{"mimeType":"application/json","text":"{}"}},
             "response":{"status":200,"headers":[{"name":"Content-Encoding","value":"gzip"}],
              "content":{"text":"aGk=","encoding":"base64"}}},
            {"request":{"method":"GET"},"response":{"status":200}},
            {"request":{"method":"GET","url":"https://x/"},"response":{"status":0}}
        ],"pages":[]}}"#;
        let mut got = Vec::new();
        for_each_entry(doc.as_bytes(), &mut |i, e| got.push((i, e))).unwrap();
        assert_eq!(got.len(), 3);
        let first = got[0].1.as_ref().unwrap();
        assert_eq!(first.path, "/v1/chat/completions");
        assert_eq!(first.response_body, b"hi");
        assert!(
            first.response_headers.is_empty(),
            "content-encoding dropped"
        );
        assert!(got[1].1.as_ref().err().unwrap().contains("url"));
        assert!(got[2].1.as_ref().err().unwrap().contains("status 0"));

        let mut n = 0;
        let err = for_each_entry(
            &br#"{"log":{"entries":[{"request":{"method":"GET","url":"http://h/"},"response":{"status":200}}, {"#[..],
            &mut |_, _| n += 1,
        )
        .unwrap_err();
        assert_eq!(n, 1);
        assert!(err.contains("after 1 entries"), "{err}");
        assert!(for_each_entry(&b"{\"x\":1}"[..], &mut |_, _| {})
            .unwrap_err()
            .contains("no log.entries"));
        assert!(for_each_entry(&b"[]"[..], &mut |_, _| {}).is_err());
    }

    /// Counts the bytes taken from the inner reader.
    struct Counting<'a> {
        inner: &'a [u8],
        taken: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken.set(self.taken.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn entries_are_handed_over_as_they_are_read() {
        // 400 entries of about 25 KB each (10 MB): when entry i is handed over, the reader
        // has taken at most the first i + 1 entries and one buffer more, never the file.
        let body = "x".repeat(25_000);
        let entry = format!(
            r#"{{"request":{{"method":"POST","url":"https://h/v1/chat/completions","headers":[]}},"response":{{"status":200,"headers":[],"content":{{"text":"{body}"}}}}}}"#
        );
        let n = 400;
        let mut doc = String::from(r#"{"log":{"version":"1.2","entries":["#);
        let head = doc.len();
        for i in 0..n {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(&entry);
        }
        doc.push_str("]}}");
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = std::io::BufReader::with_capacity(
            8192,
            Counting {
                inner: doc.as_bytes(),
                taken: taken.clone(),
            },
        );
        let mut seen = 0;
        for_each_entry(reader, &mut |i, e| {
            let x = e.unwrap();
            assert_eq!(x.response_body.len(), 25_000);
            let end_of_entry = head + (i + 1) * (entry.len() + 1);
            assert!(
                taken.get() <= end_of_entry + 8192,
                "entry {i}: {} bytes read, the entry ends at {end_of_entry}",
                taken.get()
            );
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, n);
        assert_eq!(taken.get(), doc.len());
    }
}
