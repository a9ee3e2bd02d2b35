//! A minimal XML reader for the small answers of S3 (ListBucketResult,
//! InitiateMultipartUploadResult, CompleteMultipartUploadResult, CopyObjectResult,
//! Error): the document as a tree of elements with their text, namespaces dropped.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One element: its local name, its text (entities resolved) and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|child| child.text.as_str())
    }
}

fn local_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => name.into_owned(),
    }
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// Parses a document into its root element.
pub fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let at = |reader: &Reader<&[u8]>| reader.buffer_position();
    loop {
        let event = reader
            .read_event()
            .map_err(|error| format!("invalid XML at byte {}: {error}", at(&reader)))?;
        match event {
            Event::Start(start) => open.push(Element {
                name: local_name(start.name().as_ref()),
                ..Element::default()
            }),
            Event::Empty(start) => {
                let element = Element {
                    name: local_name(start.name().as_ref()),
                    ..Element::default()
                };
                match open.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = root.or(Some(element)),
                }
            }
            Event::End(_) => {
                let element = open.pop().ok_or("a closing tag without an opening one")?;
                match open.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = root.or(Some(element)),
                }
            }
            Event::Text(text) => {
                if let Some(current) = open.last_mut() {
                    let text = text
                        .decode()
                        .map_err(|error| format!("invalid text in XML: {error}"))?;
                    current.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(current) = open.last_mut() {
                    let text = data
                        .decode()
                        .map_err(|error| format!("invalid CDATA in XML: {error}"))?;
                    current.text.push_str(&text);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(character)) => Some(character),
                    Ok(None) => reference
                        .decode()
                        .ok()
                        .and_then(|name| entity(name.as_ref())),
                    Err(_) => None,
                };
                let character = resolved
                    .ok_or_else(|| format!("unknown XML entity at byte {}", at(&reader)))?;
                if let Some(current) = open.last_mut() {
                    current.text.push(character);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(format!("the XML ends inside <{}>", unclosed.name));
    }
    root.ok_or_else(|| "the answer has no XML element".to_owned())
}

/// An S3 error answer (`<Error><Code>..</Code><Message>..</Message></Error>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ErrorBody {
    pub code: String,
    pub message: String,
}

/// The error in a body, if the body is an S3 error document.
pub fn error_body(xml: &str) -> Option<S3ErrorBody> {
    let root = parse(xml).ok()?;
    if root.name != "Error" {
        return None;
    }
    Some(S3ErrorBody {
        code: root.child_text("Code").unwrap_or("Error").trim().to_owned(),
        message: root.child_text("Message").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(xml: &str, path: &[&str], expect: Option<&str>) {
        let root = parse(xml).unwrap_or_else(|error| panic!("{xml}: {error}"));
        let mut element = Some(&root);
        for name in path {
            element = element.and_then(|e| e.child(name));
        }
        assert_eq!(element.map(|e| e.text.as_str()), expect, "{xml} {path:?}");
    }

    #[test]
    fn reads_the_answers_s3_gives() {
        let initiate = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>abc-123</UploadId></InitiateMultipartUploadResult>"#;
        check(initiate, &["UploadId"], Some("abc-123"));
        check(initiate, &["Missing"], None);
        check(
            "<a><b>x &amp; y &lt;z&gt;</b></a>",
            &["b"],
            Some("x & y <z>"),
        );
        check("<a><b>&#233;&#x20AC;</b></a>", &["b"], Some("é€"));
        check("<a><b><![CDATA[<raw>]]></b></a>", &["b"], Some("<raw>"));
        check("<a><b>  spaced  </b></a>", &["b"], Some("  spaced  "));
        check(
            "<s3:a xmlns:s3='x'><s3:b>v</s3:b></s3:a>",
            &["b"],
            Some("v"),
        );
        check("<a><b/></a>", &["b"], Some(""));
        check("<a><c><d>deep</d></c></a>", &["c", "d"], Some("deep"));
    }

    #[test]
    fn lists_repeat_elements() {
        let list = "<ListBucketResult><Contents><Key>a</Key></Contents>\
            <Contents><Key>b</Key></Contents><CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>\
            <IsTruncated>false</IsTruncated></ListBucketResult>";
        let root = parse(list).expect("parses");
        let keys: Vec<&str> = root
            .children_named("Contents")
            .filter_map(|c| c.child_text("Key"))
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(root.child_text("IsTruncated"), Some("false"));
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        for xml in [
            "",
            "not xml",
            "<a>",
            "<a></b>",
            "</a>",
            "<a>&bogus;</a>",
            "<a>&#0;</a>",
        ] {
            assert!(parse(xml).is_err(), "{xml:?} should not parse");
        }
    }

    #[test]
    fn error_documents() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
            <Message>bucket \"x\" does not exist</Message><BucketName>x</BucketName></Error>";
        assert_eq!(
            error_body(body),
            Some(S3ErrorBody {
                code: "NoSuchBucket".into(),
                message: "bucket \"x\" does not exist".into()
            })
        );
        assert_eq!(error_body("<ListBucketResult/>"), None);
        assert_eq!(error_body("garbage"), None);
    }
}
