//! `http-hello`: the hello `wasi:http` service of `make bench`. Every request gets 200 with
//! `content-type: text/plain`, `x-warden-test: hello` and the body `hello from warden http\n`:
//! what `native-http` answers, so that the bench compares the same work under warden and
//! under runc. (`http-service` answers `GET /` the same way, with many more routes around it;
//! the tests use that one.)

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Hello);

struct Hello;

const BODY: &[u8] = b"hello from warden http\n";

impl Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        // Both names and values are valid, so neither append can be refused.
        let _ = headers.append("content-type", b"text/plain");
        let _ = headers.append("x-warden-test", b"hello");
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            // Errors mean the client went away; the response was already set.
            let _ = stream.blocking_write_and_flush(BODY);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
