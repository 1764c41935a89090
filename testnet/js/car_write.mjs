#!/usr/bin/env node
// An independent CAR writer for Cairn's interop tests: js-ipfs-unixfs's importer builds the DAG
// of a file or directory tree with Kubo's `ipfs add` settings (as import.mjs does), and
// `@ipld/car`'s CarWriter writes every block into a CARv1 whose one root is the DAG's root.
//
//   node testnet/js/car_write.mjs [--cid-version 0|1] PATH OUT.car
//
// Settings: profile `unixfs-v0-2015` (size-262144 chunks, balanced layout, 174 links a node),
// CIDv0 with UnixFS leaves, or with `--cid-version 1` CIDv1 and raw leaves (Kubo's
// `--cid-version=1`); Kubo's HAMT threshold (see import.mjs); no wrapping directory; hidden
// files included. Blocks are written in the order the importer made them (leaves first, the
// root last), not depth-first from the root, and each block once.
//
// Prints one JSON line: {"root": CID, "blocks": N, "bytes": N}.

import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, readdir, readFile, readlink } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarWriter } from '@ipld/car'
import { importer } from 'ipfs-unixfs-importer'

const KUBO_SHARD_SPLIT_THRESHOLD = 256 * 1024
const SMALL_FILE = 1 << 20

function usage (msg) {
  if (msg) process.stderr.write(`car_write.mjs: ${msg}\n`)
  process.stderr.write('usage: car_write.mjs [--cid-version 0|1] PATH OUT.car\n')
  process.exit(2)
}

async function * candidates (fsPath, importPath) {
  const st = await lstat(fsPath)
  if (st.isSymbolicLink()) {
    yield { path: importPath, link: await readlink(fsPath) }
  } else if (st.isDirectory()) {
    yield { path: importPath }
    for (const name of (await readdir(fsPath)).sort()) {
      yield * candidates(join(fsPath, name), `${importPath}/${name}`)
    }
  } else if (st.isFile()) {
    const content = st.size <= SMALL_FILE ? await readFile(fsPath) : createReadStream(fsPath, { highWaterMark: SMALL_FILE })
    yield { path: importPath, content }
  } else {
    throw new Error(`unsupported file type: ${fsPath}`)
  }
}

async function main () {
  const args = process.argv.slice(2)
  let cidVersion = 0
  const rest = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--cid-version') {
      const v = args[++i]
      if (v !== '0' && v !== '1') usage('--cid-version must be 0 or 1')
      cidVersion = Number(v)
    } else if (args[i].startsWith('--')) {
      usage(`unknown option ${args[i]}`)
    } else {
      rest.push(args[i])
    }
  }
  if (rest.length !== 2) usage()
  const [path, out] = rest

  // The blocks, in the order the importer puts them, each once.
  const blocks = new Map()
  const store = {
    put: async (cid, bytes) => {
      const key = cid.multihash.bytes.join(',')
      if (!blocks.has(key)) blocks.set(key, { cid, bytes })
      return cid
    }
  }
  const rootName = basename(path.replace(/\/+$/, '')) || 'root'
  const options = {
    profile: 'unixfs-v0-2015',
    cidVersion,
    rawLeaves: cidVersion === 1,
    shardSplitThresholdBytes: KUBO_SHARD_SPLIT_THRESHOLD,
    wrapWithDirectory: false
  }
  let root
  for await (const entry of importer(candidates(path, rootName), store, options)) {
    if (entry.path === rootName) root = entry.cid
  }
  if (root === undefined) throw new Error('the importer yielded no root entry')

  const { writer, out: carBytes } = CarWriter.create([root])
  const done = pipeline(Readable.from(carBytes), createWriteStream(out))
  let bytes = 0
  for (const { cid, bytes: b } of blocks.values()) {
    await writer.put({ cid, bytes: b })
    bytes += b.length
  }
  await writer.close()
  await done
  process.stdout.write(JSON.stringify({ root: root.toString(), blocks: blocks.size, bytes }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`car_write.mjs: ${err.stack ?? err}\n`)
  process.exit(1)
})
