// Fature's GraphiQL page: the token bar, the fetcher and GraphiQL itself. Served by the app
// (web/graphiql.py) like the pinned GraphiQL, React and ReactDOM bundles loaded before it.
//
// The token stays in this browser (localStorage) and goes out as `Authorization: Bearer ...`
// to this server's /graphql only. GraphiQL fetches the schema again whenever its fetcher
// changes, so a new token builds a new fetcher: no manual refetch. Without a token the
// fetcher asks the server nothing and answers with the hint instead.
(function () {
  "use strict";

  var TOKEN_KEY = "fature.graphiql.token";
  var COMMAND = "./dev token --role analyst";
  var endpoint = new URL("/graphql", window.location.href).href;

  var defaults = JSON.parse(document.getElementById("fature-graphiql-defaults").textContent);
  var form = document.getElementById("fature-token-bar");
  var input = document.getElementById("fature-token");
  var forget = document.getElementById("fature-token-forget");
  var hint = document.getElementById("fature-hint");

  function stored(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null; // storage disabled: the token lasts as long as the page
    }
  }

  function store(key, value) {
    try {
      if (value) {
        window.localStorage.setItem(key, value);
      } else {
        window.localStorage.removeItem(key);
      }
    } catch (e) {
      // storage disabled: nothing to keep
    }
  }

  // The hint line under the bar: a sentence, then the command to run in a <code>.
  function say(state, text, command) {
    hint.dataset.state = state;
    hint.textContent = text;
    if (command) {
      var code = document.createElement("code");
      code.textContent = command;
      hint.appendChild(document.createTextNode(" "));
      hint.appendChild(code);
      hint.appendChild(document.createTextNode(" prints one."));
    }
  }

  function withoutAuthorization(headers) {
    var out = {};
    Object.keys(headers || {}).forEach(function (name) {
      if (name.toLowerCase() !== "authorization") {
        out[name] = headers[name];
      }
    });
    return out;
  }

  function hasAuthorization(headers) {
    return Object.keys(headers || {}).some(function (name) {
      return name.toLowerCase() === "authorization";
    });
  }

  function isIntrospection(params) {
    return params.operationName === "IntrospectionQuery";
  }

  // GraphiQL's fetcher for one token (or none: then the Headers pane may carry one).
  function fetcherFor(token) {
    return function (params, options) {
      var extra = (options && options.headers) || {};
      var headers = token ? withoutAuthorization(extra) : Object.assign({}, extra);
      headers["Content-Type"] = "application/json";
      headers.Accept = "application/json";
      if (token) {
        headers.Authorization = "Bearer " + token;
      } else if (!hasAuthorization(headers)) {
        var message = "No token yet: paste one into the Token field above (" + COMMAND + " prints one).";
        say("missing", "No token yet: paste one into the Token field above.", COMMAND);
        return Promise.resolve({ data: null, errors: [{ message: message, extensions: { code: "UNAUTHENTICATED" } }] });
      }
      return fetch(endpoint, {
        method: "POST",
        headers: headers,
        body: JSON.stringify(params),
        credentials: "omit",
        cache: "no-store",
      }).then(function (response) {
        return response.json().then(function (body) {
          var first = body && body.errors && body.errors[0];
          var code = first && first.extensions && first.extensions.code;
          if (response.status === 401 || code === "UNAUTHENTICATED") {
            say("refused", "The server refused the token (" + ((first && first.message) || response.status) +
                ") Paste a fresh one:", COMMAND);
          } else if (response.status === 429) {
            say("refused", (first && first.message) || "Too many requests; wait a moment.");
          } else if (isIntrospection(params) && body && body.data && body.data.__schema) {
            say("ready", "Token accepted: the schema is loaded (Docs, top left). Press Ctrl-Enter to run the query.");
          }
          return body;
        }, function () {
          return { errors: [{ message: "The server answered HTTP " + response.status + " without a JSON body." }] };
        });
      }, function (error) {
        return { errors: [{ message: "The server could not be reached: " + error.message }] };
      });
    };
  }

  // The Authorization header of the Headers pane (null when none, or while it is not JSON).
  function headerAuthorization(text) {
    try {
      var headers = JSON.parse(text || "{}");
      var name = Object.keys(headers).find(function (key) { return key.toLowerCase() === "authorization"; });
      return name ? String(headers[name]) : null;
    } catch (e) {
      return null;
    }
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var currentToken = null;
  var paneAuthorization = headerAuthorization(stored("graphiql:headers"));
  var headersTimer = null;

  // A token typed into the Headers pane counts too: once it settles, a new fetcher (and so a
  // new schema fetch) for it, as for the token field.
  function onEditHeaders(text) {
    window.clearTimeout(headersTimer);
    headersTimer = window.setTimeout(function () {
      var authorization = headerAuthorization(text);
      if (authorization !== paneAuthorization) {
        paneAuthorization = authorization;
        if (!currentToken && authorization) {
          say("loading", "Authorization header set; loading the schema...");
        }
        render(currentToken);
      }
    }, 500);
  }
  // The placeholder variables only while GraphiQL keeps none of its own (it stores the last ones).
  var initialVariables = stored("graphiql:variables") === null ? defaults.variables : undefined;

  function render(token) {
    currentToken = token;
    root.render(
      React.createElement(GraphiQL, {
        fetcher: fetcherFor(token),
        defaultQuery: defaults.query,
        variables: initialVariables,
        defaultEditorToolsVisibility: "variables",
        shouldPersistHeaders: false,
        onEditHeaders: onEditHeaders,
      })
    );
  }

  function useToken(token) {
    store(TOKEN_KEY, token);
    if (token) {
      say("loading", "Token kept in this browser; loading the schema...");
    }
    render(token); // a new fetcher: GraphiQL fetches the schema again
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var token = input.value.trim().replace(/^Bearer\s+/i, "");
    input.value = "";
    input.placeholder = token ? "token set (paste another to replace it)" : input.placeholder;
    useToken(token || null);
  });

  forget.addEventListener("click", function () {
    input.value = "";
    input.placeholder = "paste a token";
    useToken(null);
  });

  var saved = stored(TOKEN_KEY);
  if (saved) {
    input.placeholder = "token set (paste another to replace it)";
    say("loading", "Using the token kept in this browser; loading the schema...");
  } else {
    say("missing", "No token yet: paste one into the Token field above.", COMMAND);
  }
  render(saved);
})();
