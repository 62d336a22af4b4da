var $ = ITRP.$;            // jQuery, as 4me provides it
var $extension = $(this);  // this extension's container

// An editor of a list of names over a rich-text field: one text box per name, a link to add
// one (up to `max`) and a button to remove one. The field keeps the names as a bulleted list,
// which the app reads one name per bullet.
function listEditor(fieldId, noun, max) {
  var $field = $extension.find('#' + fieldId);
  var $list = $('<div class="list-editor"></div>').attr('id', fieldId + '_editor');
  var $add = $('<a href="#" class="list-add"></a>').text('Add ' + noun);
  var required = false;
  $field.addClass('hide').after($list.append($add));

  function values() {
    return $list.find('input.list-value').map(function () {
      return $.trim($(this).val());
    }).get().filter(function (value) { return value !== ''; });
  }

  function store() {
    var names = values();
    var items = names.map(function (name) { return '<li>' + $('<span>').text(name).html() + '</li>'; });
    $field.val(names.length ? { html: '<ul>' + items.join('') + '</ul>' } : '');
    $add.toggleClass('hide', $list.find('.list-item').length >= max);
    $list.find('input.list-value').required(false).first().required(required && names.length === 0);
  }

  function add(name) {
    var $item = $('<div class="list-item"><input type="text" class="list-value" autocomplete="off">' +
      '<a href="#" class="list-remove" role="button"></a></div>');
    $item.find('a.list-remove').attr('title', 'Remove this ' + noun).text('\u00d7');
    $item.find('input').val(name).on('change keyup', store);
    $item.find('a.list-remove').on('click', function () {
      $item.remove();
      if ($list.find('.list-item').length === 0) { add(''); }
      store();
      return false;
    });
    $item.insertBefore($add);
  }

  $add.on('click', function () {
    add('');
    store();
    $list.find('input.list-value').last().focus();
    return false;
  });
  var initial = String($field.val() || '').split(/^\s*\*\s+/m).map($.trim)
    .filter(function (name) { return name !== ''; });
  (initial.length ? initial : ['']).forEach(add);
  store();

  return {
    // Whether at least one name is needed (the list is shown only then).
    require: function (needed) {
      required = needed;
      $field.closest('.row').toggleClass('hide', !needed);
      store();
    }
  };
}

ITRP.hooks.register('after-prefill', function () {
  var installations = listEditor('installations', 'installation', 20);
  var $installationHandling = $extension.find('#installation_handling');
  $installationHandling.on('change', function () {
    installations.require($installationHandling.val() === 'selected_only');
  }).trigger('change');

  var assetTypes = listEditor('asset_types', 'asset type', 99);
  var $importType = $extension.find('#import_type');
  $importType.on('change', function () {
    assetTypes.require($importType.val() === 'selected_types_only');
  }).trigger('change');

  // The guidance that fits where the connection stands.
  var status = $extension.find('#connection_status').val();
  $extension.find('.step-client-credentials').toggleClass('hide', status !== 'pending_client_credentials');
  $extension.find('.step-authorize').toggleClass('hide', status !== 'pending_authorization');
  // Nothing to show before the first import.
  $extension.find('#last_synced_section').toggleClass('hide', !$extension.find('#sync_start_at').val());
});
