// The Node.js action proxy: OpenWhisk's /init and /run contract over HTTP, as
// runtimes/proxy.py speaks it for Python. No dependencies beyond Node itself, so the
// same file runs on the platform's node and in a node container image.
'use strict'

const fs = require('fs')
const http = require('http')
const net = require('net')
const os = require('os')
const path = require('path')
const zlib = require('zlib')
const { createRequire } = require('module')

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX'
const MAX_BODY_BYTES = 64 * 1024 * 1024
let entry = null

// Each activation's logs end with a sentinel line per stream, on a line of its own whatever the action's last
// write was (process.stdout.write('x'), console.log and the rest go through these wrappers).
function lineTracked (stream) {
  const write = stream.write.bind(stream)
  const tracked = { open: false }
  stream.write = function (chunk, ...rest) {
    const length = chunk == null ? 0 : chunk.length
    if (length > 0) tracked.open = typeof chunk === 'string' ? !chunk.endsWith('\n') : chunk[length - 1] !== 10
    return write(chunk, ...rest)
  }
  tracked.end = () => {
    write((tracked.open ? '\n' : '') + SENTINEL + '\n')
    tracked.open = false
  }
  return tracked
}
const streams = [lineTracked(process.stdout), lineTracked(process.stderr)]

function endActivation () {
  for (const stream of streams) stream.end()
}

// A zip archive unpacked with zlib alone (stored and deflated members; no zip64).
function unzip (buffer, dest) {
  let eocd = -1
  for (let i = buffer.length - 22; i >= Math.max(0, buffer.length - 65557); i--) {
    if (buffer.readUInt32LE(i) === 0x06054b50) { eocd = i; break }
  }
  if (eocd < 0) throw new Error('the code is not a zip archive')
  const count = buffer.readUInt16LE(eocd + 10)
  let at = buffer.readUInt32LE(eocd + 16)
  const root = path.resolve(dest)
  const limit = Number(process.env.ACTION_MAX_UNPACKED_BYTES || 512 * 1024 * 1024)
  let written = 0
  for (let n = 0; n < count; n++) {
    if (buffer.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory')
    const method = buffer.readUInt16LE(at + 10)
    const size = buffer.readUInt32LE(at + 20)
    const nameLength = buffer.readUInt16LE(at + 28)
    const skip = nameLength + buffer.readUInt16LE(at + 30) + buffer.readUInt16LE(at + 32)
    const local = buffer.readUInt32LE(at + 42)
    const name = buffer.toString('utf8', at + 46, at + 46 + nameLength)
    at += 46 + skip
    const target = path.resolve(root, name)
    if (target !== root && !target.startsWith(root + path.sep)) throw new Error(`zip member ${name} escapes the folder`)
    if (name.endsWith('/')) { fs.mkdirSync(target, { recursive: true }); continue }
    const start = local + 30 + buffer.readUInt16LE(local + 26) + buffer.readUInt16LE(local + 28)
    const data = buffer.subarray(start, start + size)
    fs.mkdirSync(path.dirname(target), { recursive: true })
    let content
    if (method === 0) content = data
    else if (method === 8) {
      try {
        content = zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, limit - written + 1) })
      } catch (err) {
        if (err.code === 'ERR_BUFFER_TOO_LARGE') content = { length: Infinity }
        else throw err
      }
    } else throw new Error(`zip member ${name} uses unsupported compression ${method}`)
    written += content.length
    if (written > limit) throw new Error(`the action's zip unpacks to more than the limit of ${limit} bytes`)
    fs.writeFileSync(target, content)
  }
}

function loadArchive (code, main, dir) {
  unzip(Buffer.from(code, 'base64'), dir)
  let file = path.join(dir, 'index.js')
  const manifest = path.join(dir, 'package.json')
  if (fs.existsSync(manifest)) {
    const declared = JSON.parse(fs.readFileSync(manifest, 'utf8')).main
    if (declared) file = path.join(dir, declared)
  }
  if (!fs.existsSync(file)) throw new Error('Zipped actions must contain either package.json or index.js at the root.')
  process.chdir(dir)
  return require(file)[main]
}

function loadSource (code, main, dir) {
  const file = path.join(dir, 'index.js')
  fs.writeFileSync(file, code)
  const module = { exports: {} }
  const lookup = /^[A-Za-z_$][\w$]*$/.test(main)
    ? `\n;return typeof ${main} === 'function' ? ${main} : undefined`
    : '\n;return undefined'
  // eslint-disable-next-line no-new-func
  const body = new Function('exports', 'require', 'module', '__filename', '__dirname', code + lookup)
  const found = body(module.exports, createRequire(file), module, file, dir)
  return found || module.exports[main] || (typeof module.exports === 'function' && main === 'main' ? module.exports : undefined)
}

function init (value) {
  if (typeof value.code !== 'string' || !value.code || typeof value.main !== 'string' || !value.main) {
    return [403, { error: 'Missing main/no code to execute.' }]
  }
  for (const [key, val] of Object.entries(value.env || {})) {
    process.env[key] = (val !== null && typeof val === 'object') ? JSON.stringify(val) : String(val)
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'action-'))
  try {
    const handler = value.binary ? loadArchive(value.code, value.main, dir) : loadSource(value.code, value.main, dir)
    if (typeof handler !== 'function') throw new Error(`Action entrypoint '${value.main}' is not a function.`)
    entry = handler
    return [200, { ok: true }]
  } catch (err) {
    console.error(err && err.stack ? err.stack : String(err))
    endActivation()
    return [502, { error: `Initialization has failed due to: ${err && err.stack ? err.stack : err}` }]
  }
}

async function run (message) {
  for (const [key, val] of Object.entries(message)) {
    if (key !== 'value' && typeof val === 'string') process.env['__OW_' + key.toUpperCase()] = val
  }
  const args = message.value === undefined || message.value === null ? {} : message.value
  if (typeof args !== 'object') {
    endActivation()
    return [403, { error: `Internal system error: the argument must be a dictionary but has type '${typeof args}'.` }]
  }
  let result
  try {
    result = await Promise.resolve(entry(args)).catch(err => ({ error: errorValue(err) }))
  } catch (err) {
    console.error(err && err.stack ? err.stack : String(err))
    endActivation()
    return [502, { error: `An error has occurred: ${err}` }]
  }
  endActivation()
  if (result === undefined) result = {}
  if (result === null || typeof result !== 'object') return [502, { error: 'The action did not return a dictionary.' }]
  return [200, result]
}

function errorValue (err) {
  if (!err) return {}
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack }
  return err
}

function reply (res, status, body) {
  let text
  try {
    text = JSON.stringify(body)
  } catch (err) {
    status = 502
    text = JSON.stringify({ error: `The action did not return a JSON-serialisable dictionary: ${err.message}` })
  }
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

// Docker mode: 127.0.0.1:PORT relayed to each PORT.sock the platform publishes in DEPLOYER_RELAY_DIR (as
// runtimes/relay.py does for the Python proxy), looked for again before every /init and /run.
const relayDir = process.env.DEPLOYER_RELAY_DIR
const relayed = new Set()

function relay (port, socketPath) {
  return new Promise(resolve => {
    const server = net.createServer({ allowHalfOpen: true }, client => {
      const upstream = net.connect({ path: socketPath, allowHalfOpen: true })
      const close = () => { client.destroy(); upstream.destroy() }
      client.on('error', close)
      upstream.on('error', close)
      client.pipe(upstream).pipe(client)
    })
    server.once('error', () => resolve()) // the port is taken here: tried again at the next sync
    server.listen(port, '127.0.0.1', () => { relayed.add(port); resolve() })
  })
}

function syncRelays () {
  let names = []
  try {
    names = relayDir ? fs.readdirSync(relayDir) : []
  } catch (err) {
    return Promise.resolve()
  }
  return Promise.all(names.map(name => {
    const m = /^(\d+)\.sock$/.exec(name)
    const port = m ? Number(m[1]) : 0
    if (port < 1 || port > 65535 || relayed.has(port)) return null
    return relay(port, path.join(relayDir, name))
  }))
}

function handle (req, res) {
  const chunks = []
  let size = 0
  req.on('data', chunk => {
    size += chunk.length
    if (size <= MAX_BODY_BYTES) chunks.push(chunk)
  })
  req.on('end', async () => {
    let message
    try {
      message = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
    } catch (err) {
      return reply(res, 400, { error: 'The request body is not JSON.' })
    }
    if (req.method !== 'POST' || message === null || typeof message !== 'object') {
      return reply(res, 400, { error: 'Expected a POST with a JSON object.' })
    }
    await syncRelays()
    if (req.url === '/init') {
      if (entry) return reply(res, 403, { error: 'Cannot initialize the action more than once.' })
      const value = message.value
      if (value === null || typeof value !== 'object') return reply(res, 403, { error: 'Missing main/no code to execute.' })
      return reply(res, ...init(value))
    }
    if (req.url === '/run') {
      if (!entry) return reply(res, 403, { error: 'System not initialized.' })
      return reply(res, ...await run(message))
    }
    reply(res, 404, { error: 'Not found.' })
  })
}

function main (argv) {
  const option = name => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
  const host = option('--host') || '127.0.0.1'
  const port = Number(option('--port') || 0)
  const readyFd = option('--ready-fd')
  syncRelays()
  const server = http.createServer(handle)
  server.keepAliveTimeout = 0 // the platform keeps one connection per container, idle as long as the container
  // a whole request (headers and body) within these, whatever node's defaults: the platform's own deadline
  // covers the answer, which an action may take its time limit to give
  server.headersTimeout = 60000
  server.requestTimeout = 120000
  server.listen(port, host, () => {
    const bound = server.address().port
    if (readyFd !== undefined) {
      fs.writeSync(Number(readyFd), `${bound}\n`)
      fs.closeSync(Number(readyFd))
    } else if (!argv.includes('--quiet')) { // in a container, output before /init would land in its first logs
      console.error(`listening on ${host}:${bound}`)
    }
  })
}

main(process.argv.slice(2))
