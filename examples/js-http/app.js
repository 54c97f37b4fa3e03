// A wasi:http service in JavaScript, built into a component with componentize-js (the
// SpiderMonkey engine, StarlingMonkey, is inside the component). warden serves it on
// WARDEN_HTTP_ADDR (default 0.0.0.0:8080), one fresh instance per request.
//
//   GET /                 a greeting
//   GET /fetch?url=URL    fetches URL with fetch() and answers with its status and body
//
// /fetch would fetch anything it is asked to: warden's `http.outbound` grant is what limits
// it. A request to an origin the profile does not list fails inside fetch() (the host answers
// HttpRequestDenied), and the service answers 502.

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === 'GET' && url.pathname === '/') {
    return new Response('Hello from JavaScript in a wasi:http component\n');
  }
  if (request.method === 'GET' && url.pathname === '/fetch') {
    const target = url.searchParams.get('url');
    if (!target) {
      return new Response('missing ?url=\n', { status: 400 });
    }
    try {
      const upstream = await fetch(target);
      const body = await upstream.text();
      return new Response(`upstream ${upstream.status}: ${body}\n`);
    } catch (e) {
      console.error(`js-http: fetch ${target}: ${e}`);
      return new Response(`fetch failed: ${e}\n`, { status: 502 });
    }
  }
  return new Response('not found\n', { status: 404 });
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
