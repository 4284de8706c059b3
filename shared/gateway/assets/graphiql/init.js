// Boots GraphiQL for the BFF. Kept out of index.html so the page needs no inline script
// (the BFF serves it with a CSP that has no 'unsafe-inline' for scripts).
(function () {
  'use strict';

  // ?query=...&variables=...&headers=... prefill the editors, so a link can be shared
  // (and the browser test can put a bearer token into the header editor).
  var params = new URLSearchParams(window.location.search);
  function param(name) {
    var value = params.get(name);
    return value === null ? undefined : value;
  }

  // Full-height layout set through the CSSOM: unlike a style attribute or <style> element,
  // this is not subject to the CSP's style-src.
  var root = document.getElementById('graphiql');
  document.documentElement.style.height = '100%';
  document.body.style.height = '100%';
  document.body.style.margin = '0';
  document.body.style.overflow = 'hidden';
  root.style.height = '100vh';

  // Same origin for HTTP; subscriptions go over graphql-transport-ws on the same path
  // (graphql-ws is bundled in graphiql.min.js and only connects when a subscription runs).
  var wsScheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: wsScheme + '//' + window.location.host + '/graphql',
  });

  root.textContent = '';
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: 'headers',
      // Tokens typed into the header editor must not end up in localStorage.
      shouldPersistHeaders: false,
      query: param('query'),
      variables: param('variables'),
      headers: param('headers'),
    }),
  );
})();
