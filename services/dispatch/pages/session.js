"use strict";
// What Beacon's pages share (served as /assets/session.js by services/dispatch/api/board.py):
// the signed-in user's access token, kept in this tab's sessionStorage (from the sign-in page, or
// handed over once in the address as #token=…); calls to the services with it and with the page's
// language (so that refusals come back in it); and the page's words: each page gives its own
// dictionary in Chinese and English, elements name their words with data-t="key", and a key
// missing from the dictionary is listed in Beacon.untranslated (the tests read it).
const Beacon = (() => {
  const root = document.documentElement;
  const lang = root.lang === "en" ? "en" : "zh";
  const urls = {dispatch: "", registry: root.dataset.registry || "", points: root.dataset.points || ""};
  const zone = root.dataset.zone || "Asia/Shanghai";
  const ACCESS = "beacon.access_token";
  const REFRESH = "beacon.refresh_token";
  const untranslated = [];
  const COMMON = {
    zh: {
      "common.switch": "English", "common.sign_out": "退出登录", "common.offline": "网络不通，请检查网络后重试。",
      "common.failed": "出错了（{status}）：{detail}", "common.loading": "正在加载…", "common.none": "暂无",
      "common.signed_in_as": "{role} · {scope}", "common.reload": "刷新",
      "role.city_admin": "市级管理员", "role.district_admin": "区级管理员", "role.street_staff": "街道工作人员",
      "role.station_staff": "站点工作人员", "role.team_leader": "队长", "role.volunteer": "志愿者", "role.partner": "合作系统",
    },
    en: {
      "common.switch": "中文", "common.sign_out": "Sign out", "common.offline": "No connection: check your network and try again.",
      "common.failed": "Something went wrong ({status}): {detail}", "common.loading": "Loading…", "common.none": "None",
      "common.signed_in_as": "{role} · {scope}", "common.reload": "Refresh",
      "role.city_admin": "City admin", "role.district_admin": "District admin", "role.street_staff": "Street staff",
      "role.station_staff": "Station staff", "role.team_leader": "Team leader", "role.volunteer": "Volunteer", "role.partner": "Partner system",
    },
  };
  let words = COMMON[lang];

  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed) {
    sessionStorage.setItem(ACCESS, handed);
    history.replaceState(null, "", location.pathname + location.search);  // not left in the address bar
  }

  function token() {
    return sessionStorage.getItem(ACCESS);
  }

  // The token's claims (role, scope, sub, exp), read without checking: the services check it.
  function claims() {
    const current = token();
    if (!current) return null;
    try {
      const part = current.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (error) {
      return null;
    }
  }

  function keep(answer) {
    sessionStorage.setItem(ACCESS, answer.access_token);
    if (answer.refresh_token) sessionStorage.setItem(REFRESH, answer.refresh_token);
  }

  function t(key, values = {}) {
    let text = words[key];
    if (text === undefined) {
      if (!untranslated.includes(key)) untranslated.push(key);
      text = key;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  // The page's dictionary ({zh: {...}, en: {...}}) in force, and every data-t element filled.
  function translate(dictionary) {
    words = {...COMMON[lang], ...dictionary[lang]};
    for (const element of document.querySelectorAll("[data-t]")) element.textContent = t(element.dataset.t);
    for (const element of document.querySelectorAll("[data-t-placeholder]")) element.placeholder = t(element.dataset.tPlaceholder);
    for (const element of document.querySelectorAll("[data-t-label]")) element.setAttribute("aria-label", t(element.dataset.tLabel));
    const other = lang === "zh" ? "en" : "zh";
    for (const link of document.querySelectorAll("a.switch-language")) {
      const address = new URL(location.href);
      address.searchParams.set("lang", other);
      address.hash = "";
      link.href = address.pathname + address.search;
      link.lang = other;
      link.textContent = t("common.switch");
    }
  }

  async function refreshed() {
    const refresh = sessionStorage.getItem(REFRESH);
    if (!refresh) return false;
    sessionStorage.removeItem(REFRESH);  // good once: a new one comes with the new pair
    try {
      const response = await fetch(`${urls.registry}/auth/refresh`, {
        method: "POST", body: new URLSearchParams({grant_type: "refresh_token", refresh_token: refresh}),
      });
      if (!response.ok) return false;
      keep(await response.json());
      return true;
    } catch (error) {
      return false;
    }
  }

  // A call to a service: {ok, status, body}; status 0 when the network failed.
  async function call(service, path, {method = "GET", json, form} = {}, retried = false) {
    const headers = {"Accept-Language": lang};
    if (token()) headers.Authorization = `Bearer ${token()}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = new URLSearchParams(form);
    }
    let response;
    try {
      response = await fetch(`${urls[service]}${path}`, {method, headers, body, cache: "no-store"});
    } catch (error) {
      return {ok: false, status: 0, body: {detail: t("common.offline")}};
    }
    if (response.status === 401 && !retried && service !== "registry" && (await refreshed())) {
      return call(service, path, {method, json, form}, true);
    }
    const type = response.headers.get("content-type") || "";
    const answer = type.includes("json") ? await response.json().catch(() => ({})) : await response.blob();
    return {ok: response.ok, status: response.status, body: answer};
  }

  function failure(answer) {
    if (answer.status === 0) return t("common.offline");
    return t("common.failed", {status: answer.status, detail: (answer.body && answer.body.detail) || ""});
  }

  async function signOut(next) {
    const refresh = sessionStorage.getItem(REFRESH);
    sessionStorage.removeItem(ACCESS);
    sessionStorage.removeItem(REFRESH);
    if (refresh) await call("registry", "/auth/revoke", {method: "POST", form: {token: refresh}});
    goSignIn(next);
  }

  function goSignIn(next) {
    location.href = `sign-in?next=${encodeURIComponent(next)}&lang=${lang}`;
  }

  function format(iso, options) {
    return new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", {timeZone: zone, hour12: false, ...options}).format(new Date(iso));
  }

  // An element with text and children, never markup from data.
  function el(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") element.className = value;
      else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else if (name in element && name !== "list") element[name] = value;
      else element.setAttribute(name, value);
    }
    element.append(...children.filter((child) => child !== null && child !== undefined));
    return element;
  }

  return {lang, urls, zone, token, claims, keep, t, translate, call, failure, signOut, goSignIn, format, el, untranslated};
})();
