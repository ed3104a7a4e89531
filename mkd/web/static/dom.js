// Small DOM helpers shared by the panels.

export const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

// An element with attributes (null/undefined/false left out, true as a bare attribute) and
// children; strings become text nodes, so no markup is ever injected.
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Instance colours: ten hues told apart with the common colour-vision deficiencies (Okabe–Ito
// and Tableau orders), each dark enough for white text; dashboard.css defines .owner-0 … .owner-9.
export const OWNER_COLOURS = 10;
export function ownerClass(id) {
  return `owner-${id % OWNER_COLOURS}`;
}
