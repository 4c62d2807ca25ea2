// app.js: the page's entry point: loads the config, starts the console pane, the history
// tab and the softphone, and runs the console's tabs. Served at /phone/ (the softphone
// for users, [webrtc] phone_page) the same page starts the softphone alone.

import { $, setText } from './dom.js';
import { getConfig } from './api.js';
import { startConsole } from './console.js';
import { HistoryView } from './history.js';
import { startSoftphone } from './softphone.js';

const info = { server: null, version: null, sip: null, error: null };

function showInfo() {
  const parts = [];
  if (info.server) parts.push(info.server);
  else if (info.version) parts.push(`voxlab ${info.version}`);
  if (info.sip) parts.push(`SIP ${info.sip}`);
  if (info.error) parts.push(info.error);
  setText($('server-info'), parts.join(' \u00b7 '));
}

/** Load the page's config into the top bar; the config, or null when it could not be had. */
function showConfig() {
  return getConfig()
    .then((cfg) => {
      info.version = cfg.version || null;
      info.sip = cfg.sip || null;
      showInfo();
      return cfg;
    })
    .catch((err) => {
      info.error = `no config (${err.message})`;
      showInfo();
      return null;
    });
}

function setupTabs(historyView) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const activate = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    if (tab.id === 'tab-history') historyView.refresh();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => activate(tab, false));
    tab.addEventListener('keydown', (ev) => {
      let j = null;
      if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = tabs.length - 1;
      if (j === null) return;
      ev.preventDefault();
      activate(tabs[j], true);
    });
  });
}

function startConsolePage() {
  const historyView = new HistoryView({
    form: $('hist-form'), scenario: $('hist-scenario'), reason: $('hist-reason'), limit: $('hist-limit'),
    table: $('history'), status: $('hist-status'),
    recordings: $('recordings'), recStatus: $('rec-status'), recRefresh: $('rec-refresh'),
  });
  setupTabs(historyView);
  showConfig().then((cfg) => { if (cfg) historyView.refresh(); });
  startConsole({
    onServerInfo: (r) => { info.server = r.server || null; showInfo(); },
    onRecordingStopped: () => setTimeout(() => historyView.refreshRecordings(), 1500),
  });
}

function startPhonePage() {
  // No console here (this page has no console token): its pane goes, the softphone stays.
  document.body.classList.add('phone-only');
  document.title = 'voxlab softphone';
  setText($('page-subtitle'), 'softphone');
  $('console-pane').remove();
  showConfig();
}

if (location.pathname.startsWith('/phone/')) startPhonePage();
else startConsolePage();
startSoftphone();
