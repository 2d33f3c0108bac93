// `demo/hello-js`: the Node.js twin of demo/hello, for checking the nodejs runtime end to end.
async function main (args) {
  const name = args.name || 'stranger'
  if (typeof name !== 'string') return { error: "parameter 'name' must be a non-empty string" }
  console.log(`greeting ${name} in activation ${process.env.__OW_ACTIVATION_ID}`)
  return { greeting: `${args.salutation || 'Hello'}, ${name}!` }
}

exports.main = main
