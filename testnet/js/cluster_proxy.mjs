#!/usr/bin/env node
// Adds a file through an IPFS Cluster peer's IPFS proxy with the official JavaScript client,
// `kubo-rpc-client`, then reads it back through the same proxy: the proxy adds and pins
// through the Cluster and passes the read to the node behind it.
//
//   node testnet/js/cluster_proxy.mjs <proxy-url> <file>
//
// Prints one JSON line, {"cid", "same"}: the CID the add returned and whether `cat` gave the
// file's bytes back. Exits 1 on any error; every call has its own deadline.

import { readFile } from 'node:fs/promises'
import { create } from 'kubo-rpc-client'

const [url, path] = process.argv.slice(2)
if (!url || !path) {
  process.stderr.write('usage: cluster_proxy.mjs <proxy-url> <file>\n')
  process.exit(2)
}
const client = create({ url, timeout: 60_000 })
const data = await readFile(path)
const added = await client.add(data, { pin: true })
const chunks = []
for await (const chunk of client.cat(added.cid)) chunks.push(chunk)
const back = Buffer.concat(chunks)
process.stdout.write(JSON.stringify({ cid: added.cid.toString(), same: Buffer.compare(back, data) === 0 }) + '\n')
