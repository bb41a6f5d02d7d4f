//! A deliberately small HTTP/1.1 client: the exact bytes we send are the
//! bytes a Kernite client would send, header values included.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`).
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> HttpResponse {
    let host = address.to_string();
    let mut with_host: Vec<(&str, &[u8])> = vec![("Host", host.as_bytes())];
    with_host.extend_from_slice(headers);
    let raw = exchange(address, method, path, &with_host, body).await;
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: body.to_owned() }
}

/// A POST as Kernite's clients send it: JSON, with the key in its header.
pub async fn post_json(address: SocketAddr, path: &str, key: Option<&str>, body: &str) -> HttpResponse {
    let mut headers: Vec<(&str, &[u8])> = vec![("Content-Type", b"application/json")];
    headers.extend(key.map(|k| ("Idempotency-Key", k.as_bytes())));
    request(address, "POST", path, &headers, body.as_bytes()).await
}

/// One HTTP/1.1 request with exactly `headers` (its Host too, if any), on
/// its own connection; the whole answer's bytes. The server may answer
/// before the body is sent (a refusal): what it answered is returned.
pub async fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connecting");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    let _ = stream.write_all(&head).await;
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    raw
}
