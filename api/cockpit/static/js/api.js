// Calls to the aitrader API; mutating calls carry the operator's token and name when given.
const $ = (id) => document.getElementById(id);

export function identityHeaders() {
  const headers = { "content-type": "application/json" };
  const token = localStorage.getItem("aitrader.token");
  const operator = localStorage.getItem("aitrader.operator");
  if (token) headers.authorization = `Bearer ${token}`;
  if (operator) headers["x-operator"] = operator;
  return headers;
}

export async function get(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

export async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: identityHeaders(), body: JSON.stringify(body) });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

export function notify(message, isError = false) {
  const box = $("notice");
  box.textContent = message;
  box.style.color = isError ? "var(--short)" : "var(--warn)";
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const fmt = (value, digits = 6) => (value === null || value === undefined ? "–" : Number(value).toPrecision(digits));
export const pct = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(2)} %`);
export { $ };
