#!/usr/bin/env node
// Runs the same RPC API calls against a Kubo daemon and a Cairn daemon and compares the
// answers' shapes field by field: every key Kubo's answer has, Cairn's must have with the same
// JSON type (and no key Kubo's lacks), at every depth; NDJSON answers line by line; byte
// answers (cat, block/get, dag/export) must be equal.
//
//   node testnet/js/rpc_shapes.mjs <kubo-api-url> <cairn-api-url>
//
// A call compared 'exact' must get the same answer text from both (errors whose words
// clients look for).
//
// The URLs are http://127.0.0.1:PORT. The two daemons should be connected to each other, so
// that the swarm calls have a peer to list. Differences Cairn documents (docs/api.md) are
// listed in KNOWN with the reason; any other fails the run.
//
// Prints one JSON line per call, {"call", "ok", "diffs"}, and exits 1 if any call differs.
// Every call has a deadline, so the script always ends.

const [kuboUrl, cairnUrl] = process.argv.slice(2)
if (!kuboUrl || !cairnUrl) {
  process.stderr.write('usage: rpc_shapes.mjs <kubo-api-url> <cairn-api-url>\n')
  process.exit(2)
}

// Where Cairn's answer knowingly differs from Kubo's: "call path" -> why.
const KNOWN = {
  // Kubo streams one line per removed block; Cairn answers one summary line (docs/api.md).
  // A line a removed block on both; each repo removes its own blocks, so the counts differ.
  'repo/gc': 'each repo removes its own blocks',
  // Kubo's config has many sections Cairn has no use for, and Cairn's some Kubo lacks.
  'config/show': "each node's own config",
  // Cairn's bitswap/stat counts its wants (WantlistLength) and the peers that sent a block in
  // the last 10 s (SendingPeers), and does not keep Kubo's message counters or list its wants.
  'bitswap/stat .Wantlist': 'Cairn counts its wants instead (WantlistLength)',
  'bitswap/stat .WantlistLength': "Cairn's count of its wants",
  'bitswap/stat .SendingPeers': "Cairn's count of peers that sent a block in the last 10 s",
  'bitswap/stat .DupDataReceived': "Kubo's duplicate byte count, not kept",
  'bitswap/stat .MessagesReceived': "Kubo's message count, not kept",
  // Cairn's addition to repo/stat (docs/api.md).
  'repo/stat .Pins': "Cairn's count of pins",
  // A malformed argument is the client's error: Cairn answers 400, Kubo 500 (the same body).
  'block/stat bad cid status': 'Cairn answers 400 to a malformed argument, Kubo 500'
}

const TIMEOUT = 30_000

async function call (base, path, { args = [], query = {}, body } = {}) {
  const url = new URL(`${base}/api/v0/${path}`)
  for (const a of args) url.searchParams.append('arg', a)
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v))
  const res = await fetch(url, { method: 'POST', body, signal: AbortSignal.timeout(TIMEOUT) })
  const bytes = new Uint8Array(await res.arrayBuffer())
  return { status: res.status, bytes, type: res.headers.get('content-type') ?? '' }
}

/** The answer as JSON values: one, or one per NDJSON line. */
function json (answer) {
  const text = new TextDecoder().decode(answer.bytes).trim()
  if (text === '') return []
  try {
    return [JSON.parse(text)]
  } catch {
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
  }
}

/** The type of a JSON value: null, boolean, number, string, array or object. */
function kind (v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v
}

/** Every difference of shape between `kubo` and `cairn` under `at`, as "path: what". */
function diff (kubo, cairn, at = '') {
  const out = []
  const [k, c] = [kind(kubo), kind(cairn)]
  // An empty array or null on one side says nothing about the element shape.
  if (k !== c && !(k === 'null' || c === 'null')) return [`${at || '.'}: Kubo ${k}, Cairn ${c}`]
  if (k === 'object' && c === 'object') {
    for (const key of Object.keys(kubo)) {
      if (!(key in cairn)) out.push(`${at}.${key}: missing in Cairn`)
      else out.push(...diff(kubo[key], cairn[key], `${at}.${key}`))
    }
    for (const key of Object.keys(cairn)) {
      if (!(key in kubo)) out.push(`${at}.${key}: not in Kubo`)
    }
  } else if (k === 'array' && c === 'array' && kubo.length > 0 && cairn.length > 0) {
    out.push(...diff(kubo[0], cairn[0], `${at}[]`))
  }
  return out
}

/** A JSON value as text with its objects' keys sorted, for comparing values. */
function canon (v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

function multipart (files) {
  const form = new FormData()
  for (const [name, content, type] of files) {
    form.append('file', new Blob([content], { type: type ?? 'application/octet-stream' }), encodeURIComponent(name))
  }
  return form
}

const bytes = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 13) & 0xff)
const results = []

/** Runs `path` on both and compares; returns both answers. */
async function both (path, opts = {}, compare = 'shape') {
  const name = opts.label ?? path
  let diffs = []
  let answers = []
  try {
    const make = () => (typeof opts.body === 'function' ? opts.body() : opts.body)
    answers = [await call(kuboUrl, path, { ...opts, body: make() }), await call(cairnUrl, path, { ...opts, body: make() })]
    const [k, c] = answers
    if (k.status !== c.status) diffs.push(`status: Kubo ${k.status}, Cairn ${c.status}`)
    if (compare === 'exact') {
      const [kt, ct] = [canon(json(k)), canon(json(c))]
      if (kt !== ct) diffs.push(`answers differ: Kubo ${kt}, Cairn ${ct}`)
    } else if (compare === 'bytes') {
      if (Buffer.compare(Buffer.from(k.bytes), Buffer.from(c.bytes)) !== 0) diffs.push(`bytes differ (Kubo ${k.bytes.length}, Cairn ${c.bytes.length})`)
    } else if (k.status === c.status) {
      const [kj, cj] = [json(k), json(c)]
      if (kj.length !== cj.length && !KNOWN[name]) diffs.push(`lines: Kubo ${kj.length}, Cairn ${cj.length}`)
      for (let i = 0; i < Math.min(kj.length, cj.length); i++) diffs.push(...diff(kj[i], cj[i]))
    }
  } catch (e) {
    diffs.push(`error: ${e.message}`)
  }
  const known = diffs.filter((d) => KNOWN[name] || KNOWN[`${name} ${d.split(':')[0]}`])
  const unknown = diffs.filter((d) => !known.includes(d))
  results.push({ call: name, ok: unknown.length === 0, diffs: unknown, known })
  if (compare === 'bytes') return []
  return answers.map((a) => {
    try {
      return a && a.status === 200 ? json(a) : []
    } catch {
      return []
    }
  })
}

const file = bytes(300_000, 1)
const dirParts = () => multipart([
  ['d', '', 'application/x-directory'],
  ['d/a.txt', 'hello from a'],
  ['d/sub', '', 'application/x-directory'],
  ['d/sub/b.bin', bytes(70_000, 2)]
])

await both('version')
await both('id')
const [[added]] = await both('add', { body: () => multipart([['f.bin', file]]), label: 'add file' })
const cid = added?.Hash
const [dirLines] = await both('add', { body: dirParts, label: 'add directory' })
const dir = dirLines?.at(-1)?.Hash
if (cid && dir) {
  await both('cat', { args: [cid], label: 'cat' }, 'bytes')
  await both('cat', { args: [cid], query: { offset: 1000, length: 5000 }, label: 'cat range' }, 'bytes')
  await both('ls', { args: [dir] })
  await both('block/stat', { args: [cid] })
  await both('block/get', { args: [cid], label: 'block/get' }, 'bytes')
  await both('dag/export', { args: [dir], label: 'dag/export' }, 'bytes')
  await both('pin/ls', { args: [dir], query: { type: 'recursive' } })
  await both('pin/ls', { args: [dir], query: { stream: true }, label: 'pin/ls stream' })
  await both('pin/ls', { query: { stream: true, type: 'direct' }, label: 'pin/ls stream none' })
  await both('pin/rm', { args: [dir] })
  // IPFS Cluster's connector reads these two errors by their words.
  await both('pin/rm', { args: [dir], label: 'pin/rm unpinned' }, 'exact')
  await both('pin/ls', { args: [dir], query: { stream: true }, label: 'pin/ls stream unpinned' }, 'exact')
  await both('pin/add', { args: [dir] })
  await both('resolve', { args: [`/ipfs/${dir}/sub/b.bin`], label: 'resolve' }, 'exact')
  await both('resolve', { args: [dir], label: 'resolve root' }, 'exact')
  await both('block/put', { body: () => multipart([['b', 'a raw block']]), query: { 'cid-codec': 'raw' } })
}

// pin/update, as IPFS Cluster's connector moves a pin to a new version: two trees that differ
// in one file, the first pinned; the pin moves, then pin/ls shows the second pinned and the
// first not. A FROM that is not pinned is refused in Kubo's words.
const version = (text) => () => multipart([
  ['v', '', 'application/x-directory'],
  ['v/a.txt', text],
  ['v/sub', '', 'application/x-directory'],
  ['v/sub/b.bin', bytes(70_000, 3)]
])
const [fromLines] = await both('add', { body: version('first'), label: 'add pin/update FROM' })
const [toLines] = await both('add', { body: version('second'), query: { pin: false }, label: 'add pin/update TO' })
const [from, to] = [fromLines?.at(-1)?.Hash, toLines?.at(-1)?.Hash]
if (from && to) {
  await both('pin/update', { args: [from, to], label: 'pin/update' }, 'exact')
  await both('pin/ls', { args: [to], query: { type: 'recursive' }, label: 'pin/ls after pin/update TO' }, 'exact')
  await both('pin/ls', { args: [from], label: 'pin/ls after pin/update FROM' }, 'exact')
  await both('pin/update', { args: [from, to], label: 'pin/update unpinned FROM' }, 'exact')
  await both('pin/update', { args: [`/ipfs/${to}`, `/ipfs/${from}/sub`], query: { unpin: false }, label: 'pin/update paths unpin=false' }, 'exact')
  await both('pin/ls', { args: [to], query: { type: 'recursive' }, label: 'pin/ls after unpin=false' }, 'exact')
}

// block/put: every answer byte for byte (CIDs, sizes, errors).
const raw = (data) => () => multipart([['b', data]])
const cbor = Uint8Array.from([0xa1, 0x61, 0x61, 0x01]) // {"a": 1}
const pb = Uint8Array.from([0x0a, 0x02, 0x68, 0x69]) // a dag-pb node, Data "hi"
await both('block/put', { body: () => multipart([['b', 'one block'], ['c', 'and another']]), label: 'block/put two parts' }, 'exact')
await both('block/put', { body: raw('a raw block'), query: { mhtype: 'sha2-512' }, label: 'block/put sha2-512' }, 'exact')
await both('block/put', { body: raw('a raw block'), query: { mhtype: 'sha2-256', mhlen: 32 }, label: 'block/put mhlen=32' }, 'exact')
await both('block/put', { body: raw(cbor), query: { 'cid-codec': 'dag-cbor' }, label: 'block/put dag-cbor' }, 'exact')
await both('block/put', { body: raw('{"a":1}'), query: { 'cid-codec': 'dag-json' }, label: 'block/put dag-json' }, 'exact')
await both('block/put', { body: raw(pb), query: { format: 'v0' }, label: 'block/put format=v0' }, 'exact')
await both('block/put', { body: raw(pb), query: { format: 'v0', mhtype: 'sha2-512' }, label: 'block/put format=v0 sha2-512' }, 'exact')
const [[pinned]] = await both('block/put', { body: raw('a pinned block'), query: { pin: true }, label: 'block/put pin=true' }, 'exact')
if (pinned?.Key) await both('pin/ls', { args: [pinned.Key], query: { type: 'recursive' }, label: 'pin/ls after block/put pin=true' }, 'exact')
// Kubo 0.43's limit is 2 MiB: 1.5 MiB goes in as it is, 2 MiB and a byte only when allowed.
await both('block/put', { body: raw(bytes(1_500_000, 4)), label: 'block/put 1.5 MiB' }, 'exact')
await both('block/put', { body: raw(bytes((2 << 20) + 1, 5)), label: 'block/put over 2 MiB' }, 'exact')
await both('block/put', { body: raw(bytes((2 << 20) + 1, 5)), query: { 'allow-big-block': true }, label: 'block/put over 2 MiB allowed' }, 'exact')
await both('swarm/peers')
await both('swarm/addrs/listen')
await both('bitswap/stat')
await both('repo/stat')
await both('repo/gc')
// The configs differ (Kubo's has far more keys); IPFS Cluster reads Datastore.StorageMax.
const [[kuboConfig], [cairnConfig]] = await both('config/show')
const max = [kuboConfig, cairnConfig].map((c) => typeof c?.Datastore?.StorageMax)
results.push({ call: 'config/show .Datastore.StorageMax', ok: max[0] === 'string' && max[1] === 'string', diffs: max[0] === max[1] ? [] : [`Kubo ${max[0]}, Cairn ${max[1]}`], known: [] })
// Errors: a bad CID is a 400/500 with {Message, Code, Type} on both.
await both('block/stat', { args: ['not-a-cid'], label: 'block/stat bad cid' })

let failed = false
for (const r of results) {
  process.stdout.write(JSON.stringify(r) + '\n')
  if (!r.ok) failed = true
}
process.exit(failed ? 1 : 0)
