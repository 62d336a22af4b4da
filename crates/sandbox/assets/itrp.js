// The parts of 4me's `ITRP` object that UI extensions use, for the sandbox's App Store preview
// (crates/sandbox/src/app_store.rs): `ITRP.$` (jQuery), `ITRP.hooks.register`, `ITRP.context`,
// `ITRP.record`, jQuery's `.required(bool)` and `.readonly(bool)` as 4me adds them, and
// rich-text fields (`val()` reads the text, `val({html: ...})` writes a list). Saving the form
// checks every visible `required` field and installs the app.
(function (window, $) {
  'use strict';

  var hooks = {};

  $.fn.required = function (on) {
    return this.toggleClass('required', !!on);
  };
  $.fn.readonly = function (on) {
    return this.prop('readonly', !!on);
  };

  // A rich-text field: its text is kept as 4me keeps a list, one "* item" line per item.
  function richText(html) {
    var $html = $('<div>').html(html);
    var items = $html.find('li').map(function () { return '* ' + $.trim($(this).text()); }).get();
    return items.length ? items.join('\n') : $.trim($html.text());
  }
  var val = $.fn.val;
  $.fn.val = function (value) {
    if (!this.hasClass('rich-text')) {
      return val.apply(this, arguments);
    }
    if (arguments.length === 0) {
      return this.data('text') || '';
    }
    var text = value && value.html !== undefined ? richText(value.html) : String(value || '');
    return this.each(function () {
      $(this).data('text', text).text(text);
    });
  };

  window.ITRP = {
    $: $,
    context: 'app_instance',
    record: { new: true },
    hooks: {
      register: function (name, fn) {
        (hooks[name] = hooks[name] || []).push(fn);
      }
    }
  };

  function hidden(element) {
    return $(element).closest('.hide').length > 0 || element.disabled;
  }

  function labelOf($container, element) {
    var $label = element.id ? $container.find('label[for="' + element.id + '"]') : $();
    if (!$label.length) {
      $label = $(element).closest('.row').find('label').first();
    }
    return $.trim($label.text()) || element.id;
  }

  // The fields of the extension: what 4me saves when the customer presses Save.
  function fields($container) {
    var customFields = {};
    var secrets = {};
    $container.find('input[id], select[id], textarea[id], .rich-text[id]').each(function () {
      if (this.disabled) {
        return; // written by the app, not by the customer
      }
      var value = $(this).val();
      if (this.type === 'number' && value !== '') {
        value = Number(value);
      }
      if ($(this).is('[data-secret]')) {
        if (value !== '') {
          secrets[this.id] = value;
        }
      } else {
        customFields[this.id] = value;
      }
    });
    return { custom_fields: customFields, secrets: secrets };
  }

  window.AppStorePreview = {
    start: function (container, extension) {
      var $container = $(container);
      $(function () {
        extension.call(container);
        (hooks['after-prefill'] || []).forEach(function (fn) { fn.call(container); });
      });
      $('#record_form').on('submit', function () {
        var $errors = $('#errors').addClass('hide').empty();
        $container.find('.row').removeClass('error');
        var missing = [];
        $container.find('.required').each(function () {
          if (!hidden(this) && $.trim(String($(this).val() || '')) === '') {
            missing.push(labelOf($container, this));
            $(this).closest('.row').addClass('error');
          }
        });
        if (missing.length) {
          missing.forEach(function (label) {
            $errors.append($('<p>').text(label + ' is required.'));
          });
          $errors.removeClass('hide');
          return false;
        }
        var body = fields($container);
        body.account = $.trim($('#customer_account').val());
        $.ajax({
          url: $(this).data('install'),
          method: 'POST',
          contentType: 'application/json',
          data: JSON.stringify(body)
        }).done(function (installed) {
          var $result = $('#result').removeClass('hide').empty();
          $result.append($('<p id="installed">').text('Installed: app instance ' + installed.app_instance_id));
          installed.deliveries.forEach(function (delivery) {
            $result.append($('<p class="muted">').text('4me sent ' + delivery.event + ' (' + delivery.status + ')'));
          });
          if (installed.configuration_url) {
            $result.append($('<a id="configure">').attr('href', installed.configuration_url).text('Configure the app'));
          }
        }).fail(function (xhr) {
          var message = (xhr.responseJSON && xhr.responseJSON.message) || xhr.statusText;
          $errors.append($('<p>').text(message)).removeClass('hide');
        });
        return false;
      });
    }
  };
})(window, jQuery);
