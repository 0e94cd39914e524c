// NumPy .npy (format version 1.0) writer for float32 arrays: numpy.load reads what this returns.
// Layout: "\x93NUMPY", version 1 0, header length (uint16 LE), a Python dict literal padded with spaces and ended
// by "\n" so that the data starts at a multiple of 64 bytes, then the values as little-endian float32, C order.

export function npyFloat32(values, shape = [values.length]) {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== values.length) throw new Error(`npy: shape ${shape} holds ${count} values, got ${values.length}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + dict.length + 1;
  const header = dict + " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const bytes = new Uint8Array(10 + header.length + 4 * values.length);
  const view = new DataView(bytes.buffer);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93 N U M P Y, version 1.0
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) bytes[10 + i] = header.charCodeAt(i);
  const start = 10 + header.length;
  values.forEach((v, i) => view.setFloat32(start + 4 * i, v, true));
  return bytes;
}
